"""wetlandunet:predictmany and wetlandunet:mergemany - many scenes, one table, one mosaic."""

import json
import os

from qgis.core import QgsProcessingException

from ..core.classes import default_colors
from ..core.schema import MERGE_MANY, PREDICT_MANY
from .base import WetlandAlgorithm
from .model_info import model_metadata, names_and_colors
from .styling import StylePostProcessor, class_style, write_qml, write_ramp_qml
from .tensorflow_check import worker_ready


def style_maps(maps, names, colors, feedback):
    """Write the class palette as a .qml beside every map (a map that cannot be styled
    is reported, not fatal: the map itself is good)."""
    for path in maps:
        try:
            write_qml(path, names, colors)
        except RuntimeError as err:
            feedback.reportError(f"{path} was written but could not be styled: {err}")


def style_mosaic(outputs, result, names, colors, context, feedback):
    """Style the mosaic (when one was made) and load it styled."""
    mosaic = result.get("output_mosaic")
    if not mosaic:
        outputs["OUTPUT_MOSAIC"] = None
        return
    if not os.path.exists(mosaic):
        raise QgsProcessingException(f"The job finished but the mosaic {mosaic} is missing.")
    style_maps([mosaic], names, colors, feedback)
    StylePostProcessor.attach(context, mosaic, class_style(names, colors))


class PredictManyAlgorithm(WetlandAlgorithm):
    """Classify many scenes with one worker and one loaded model."""

    JOB = PREDICT_MANY

    def canExecute(self):
        return worker_ready()

    def prepare(self, values, parameters, context, feedback):
        # The model is read here, before the worker starts: a wrong file fails at once.
        self._classes = names_and_colors(model_metadata(values["model"]))
        return values

    def results(self, outputs, result, values, context, feedback):
        names, colors = self._classes
        style_maps(result.get("maps") or [], names, colors, feedback)
        for path in result.get("uncertainty_maps") or []:
            try:
                write_ramp_qml(path)
            except RuntimeError as err:
                feedback.reportError(f"{path} was written but could not be styled: {err}")
        style_mosaic(outputs, result, names, colors, context, feedback)
        outputs["OUTPUT_TABLE"] = result.get("output_table")
        failed = int(result.get("scenes_failed") or 0)
        feedback.pushInfo(
            f"{result.get('scenes_done')} scenes mapped, {failed} failed; table: "
            f"{result.get('output_table')}"
        )
        if failed:
            feedback.reportError(f"{failed} scenes failed: see the status and message columns.")
        return outputs


class MergeManyAlgorithm(WetlandAlgorithm):
    """Merge the tables (and maps) of several 'Classify many scenes' runs."""

    JOB = MERGE_MANY

    def results(self, outputs, result, values, context, feedback):
        mosaic = result.get("output_mosaic")
        names, colors = [], []
        if mosaic and os.path.exists(mosaic):
            import rasterio

            with rasterio.open(mosaic) as src:
                tags = src.tags()
            names = json.loads(tags.get("class_names") or "[]")
            colors = json.loads(tags.get("class_colors") or "[]") or default_colors(names)
        if mosaic and names:
            style_mosaic(outputs, result, names, colors[: len(names)], context, feedback)
        elif not mosaic:
            outputs["OUTPUT_MOSAIC"] = None
        return outputs
