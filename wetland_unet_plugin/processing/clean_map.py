"""wetlandunet:cleanmap - minimum mapping unit and polygons of a class map (in QGIS's process)."""

import os

from qgis.core import QgsProcessingException, QgsVectorLayer

from ..core.schema import CLEANMAP
from .base import WetlandAlgorithm
from .styling import (
    StylePostProcessor,
    class_style,
    polygon_style,
    write_polygon_qml,
    write_qml,
)


class CleanMapAlgorithm(WetlandAlgorithm):
    """Merge patches below a minimum mapping unit; write the cleaned map and its polygons,
    both styled with the class palette."""

    JOB = CLEANMAP

    def results(self, outputs, result, values, context, feedback):
        names, colors = result["class_names"], result["class_colors"]
        output = values["output"]
        try:
            outputs["OUTPUT_STYLE"] = write_qml(output, names, colors)
        except RuntimeError as err:
            raise QgsProcessingException(
                f"The cleaned map was written but could not be styled: {err}"
            ) from None
        StylePostProcessor.attach(context, output, class_style(names, colors))
        polygons = values.get("output_polygons")
        if polygons and os.path.exists(polygons):
            try:
                write_polygon_qml(polygons, names, colors, os.path.splitext(polygons)[0] + ".qml")
            except RuntimeError as err:
                feedback.pushWarning(f"The polygons could not be styled: {err}")
            style = polygon_style(names, colors)
            StylePostProcessor.attach(context, polygons, style, QgsVectorLayer)
        for name, hectares in result.get("class_hectares", {}).items():
            feedback.pushInfo(f"{name}: {hectares:,.4f} ha after cleaning")
        return outputs
