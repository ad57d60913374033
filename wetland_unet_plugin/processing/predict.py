"""wetlandunet:predict - tiled prediction of a scene into a styled class map (in the worker)."""

import os

from qgis.core import QgsProcessingException

from ..core.schema import PREDICT
from .base import WetlandAlgorithm
from .model_info import model_metadata, names_and_colors
from .styling import StylePostProcessor, class_style, ramp_style, write_qml, write_ramp_qml
from .tensorflow_check import worker_ready


class PredictAlgorithm(WetlandAlgorithm):
    """Classify a scene with a trained model, tile by tile, and load the map styled."""

    JOB = PREDICT

    def canExecute(self):
        return worker_ready()

    def prepare(self, values, parameters, context, feedback):
        # The model is read here, before the worker starts: a wrong file fails at once.
        self._classes = names_and_colors(model_metadata(values["model"]))
        return values

    def results(self, outputs, result, values, context, feedback):
        output = values["output"]
        if not os.path.exists(output):
            raise QgsProcessingException(f"The worker finished but {output} is missing.")
        names, colors = self._classes
        try:
            qml = write_qml(output, names, colors)
        except RuntimeError as err:
            raise QgsProcessingException(
                f"The class map was written but could not be styled: {err}"
            ) from None
        feedback.pushInfo(f"Style written to {qml}")
        StylePostProcessor.attach(context, output, class_style(names, colors))
        outputs["OUTPUT_STYLE"] = qml
        uncertainty = values.get("output_uncertainty")
        if uncertainty and os.path.exists(uncertainty):
            try:
                write_ramp_qml(uncertainty)
            except RuntimeError as err:
                feedback.pushWarning(f"The uncertainty could not be styled: {err}")
            StylePostProcessor.attach(context, uncertainty, ramp_style)
        if result.get("class_hectares"):
            for name, hectares in result["class_hectares"].items():
                feedback.pushInfo(f"{name}: {hectares:,.4f} ha")
        return outputs
