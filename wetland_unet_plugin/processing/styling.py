"""Styling of outputs with QGIS's own renderers: .qml sidecars and post-processors.

A *style* is a function that sets a layer's renderer (``class_style``, ``ramp_style``,
``polygon_style``); ``write_style`` saves it as a .qml beside a file, and
``StylePostProcessor.attach`` applies it to an output once QGIS has loaded it.
"""

import os

from qgis.core import (
    QgsPalettedRasterRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

# Post-processors must outlive processAlgorithm (QGIS holds no Python reference).
_KEEP_ALIVE = {}


def paletted_renderer(layer, names, colors, band=1):
    """Return a QgsPalettedRasterRenderer with entries 1..N carrying names and colours."""
    classes = [
        QgsPalettedRasterRenderer.Class(index, QColor(color), name)
        for index, (name, color) in enumerate(zip(names, colors), start=1)
    ]
    return QgsPalettedRasterRenderer(layer.dataProvider(), band, classes)


def apply_style(layer, names, colors):
    """Style a raster layer as a class map (0 / nodata stays transparent)."""
    layer.setRenderer(paletted_renderer(layer, names, colors))
    layer.triggerRepaint()


def class_style(names, colors):
    """The class-map style: a paletted renderer with the class names and colours."""
    return lambda layer: apply_style(layer, names, colors)


def ramp_renderer(layer, minimum=0.0, maximum=1.0, band=1):
    """A single-band pseudocolour renderer with a sequential ramp (light = low, dark = high),
    for 0..1 rasters such as predict's uncertainty."""
    from qgis.core import (
        QgsColorRampShader,
        QgsGradientColorRamp,
        QgsRasterShader,
        QgsSingleBandPseudoColorRenderer,
    )

    ramp = QgsGradientColorRamp(QColor("#fff5eb"), QColor("#7f2704"))  # ColorBrewer Oranges
    shader_function = QgsColorRampShader(minimum, maximum, ramp)
    shader_function.classifyColorRamp(5, band, layer.extent(), layer.dataProvider())
    shader = QgsRasterShader(minimum, maximum)
    shader.setRasterShaderFunction(shader_function)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(minimum)
    renderer.setClassificationMax(maximum)
    return renderer


def ramp_style(layer):
    """The sequential-ramp style of 0..1 rasters (predict's uncertainty)."""
    layer.setRenderer(ramp_renderer(layer))
    layer.triggerRepaint()


def class_polygon_renderer(names, colors, field="class_id"):
    """A categorized renderer of polygons by class id, in the class colours and names."""
    from qgis.core import (
        QgsCategorizedSymbolRenderer,
        QgsFillSymbol,
        QgsRendererCategory,
        QgsSymbol,
        QgsWkbTypes,
    )

    categories = []
    for index, (name, color) in enumerate(zip(names, colors), start=1):
        symbol = QgsSymbol.defaultSymbol(QgsWkbTypes.PolygonGeometry) or QgsFillSymbol()
        symbol.setColor(QColor(color))
        categories.append(QgsRendererCategory(index, symbol, name))
    return QgsCategorizedSymbolRenderer(field, categories)


def polygon_style(names, colors):
    """The class-polygon style: categories by class id in the class colours."""

    def style(layer):
        layer.setRenderer(class_polygon_renderer(names, colors))
        layer.triggerRepaint()

    return style


def qml_path_for(raster_path):
    """The sidecar QGIS loads as a raster's default style: same name, .qml."""
    return os.path.splitext(raster_path)[0] + ".qml"


def write_style(layer, style, qml_path):
    """Apply ``style`` to ``layer`` and save it as ``qml_path``; return the path.

    Raises:
        RuntimeError: when the layer cannot be opened or the style not saved.
    """
    if not layer.isValid():
        raise RuntimeError(f"cannot open {layer.source()} to style it")
    style(layer)
    message, ok = layer.saveNamedStyle(qml_path)
    if not ok:
        raise RuntimeError(f"cannot write the style {qml_path}: {message}")
    return qml_path


def write_qml(raster_path, names, colors, qml_path=None):
    """Write the class palette as a .qml (default: beside the raster) and return its path."""
    layer = QgsRasterLayer(raster_path, "classes", "gdal")
    return write_style(layer, class_style(names, colors), qml_path or qml_path_for(raster_path))


def write_ramp_qml(raster_path, qml_path=None):
    """Write a sequential-ramp (0..1) .qml beside a raster and return its path."""
    layer = QgsRasterLayer(raster_path, "uncertainty", "gdal")
    return write_style(layer, ramp_style, qml_path or qml_path_for(raster_path))


def write_polygon_qml(layer_source, names, colors, qml_path):
    """Write the class-polygon style of a vector layer as ``qml_path`` and return it."""
    layer = QgsVectorLayer(layer_source, "polygons", "ogr")
    return write_style(layer, polygon_style(names, colors), qml_path)


class StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies a style to an output of the given layer type once QGIS has loaded it."""

    def __init__(self, style, kind=QgsRasterLayer):
        super().__init__()
        self.style, self.kind = style, kind

    def postProcessLayer(self, layer, context, feedback):
        if isinstance(layer, self.kind) and layer.isValid():
            self.style(layer)

    @classmethod
    def attach(cls, context, destination, style, kind=QgsRasterLayer):
        """Attach to an output that QGIS will load when the algorithm completes."""
        if not context.willLoadLayerOnCompletion(destination):
            return None
        processor = cls(style, kind)
        _KEEP_ALIVE[destination] = processor
        context.layerToLoadOnCompletionDetails(destination).setPostProcessor(processor)
        return processor
