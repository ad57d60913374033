"""wetlandunet:styleclassified - apply a class palette to any class raster (QGIS only)."""

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException

from ..core.classes import default_colors, parse_class_names, parse_colors
from ..core.feedback import CoreError
from ..core.schema import STYLE
from .base import WetlandAlgorithm
from .model_info import model_metadata, names_and_colors
from .parameters import read_value
from .styling import apply_style, qml_path_for, write_qml


class StyleClassifiedAlgorithm(WetlandAlgorithm):
    """Style a raster of class ids 1..N with names and colours from a model or given by hand."""

    JOB = STYLE

    def flags(self):
        # Styles a project layer: run on the main thread, where layers may be touched.
        return super().flags() | QgsProcessingAlgorithm.FlagNoThreading

    def processAlgorithm(self, parameters, context, feedback):
        values = {
            p.key: read_value(self, p, parameters, context, feedback) for p in self.JOB.params
        }
        source = values["input"]
        try:
            if values["model"]:
                names, colors = names_and_colors(model_metadata(values["model"]))
                if values["class_colors"]:
                    colors = parse_colors(values["class_colors"], len(names))
            elif values["class_names"]:
                names = parse_class_names(values["class_names"])
                colors = parse_colors(values["class_colors"], len(names)) or default_colors(names)
            else:
                raise QgsProcessingException(
                    "Give MODEL (a .keras model) or CLASS_NAMES to say which class each id is."
                )
        except CoreError as err:
            raise QgsProcessingException(str(err)) from None
        qml = values["output_style"] or qml_path_for(source)
        try:
            write_qml(source, names, colors, qml)
        except RuntimeError as err:
            raise QgsProcessingException(str(err)) from None
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        if (
            layer is not None
            and context.project() is not None
            and context.project().mapLayer(layer.id()) is not None
        ):
            apply_style(layer, names, colors)
        for index, (name, color) in enumerate(zip(names, colors), start=1):
            feedback.pushInfo(f"{index}: {name} {color}")
        return {"OUTPUT_STYLE": qml, "OUTPUT": source}
