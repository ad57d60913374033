"""Class-map styling with QGIS's own paletted renderer: .qml sidecars and a post-processor."""

import os

from qgis.core import (
    QgsPalettedRasterRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
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


def qml_path_for(raster_path):
    """The sidecar QGIS loads as a raster's default style: same name, .qml."""
    return os.path.splitext(raster_path)[0] + ".qml"


def write_qml(raster_path, names, colors, qml_path=None):
    """Write the class palette as a .qml style file and return its path.

    Raises:
        RuntimeError: when the raster cannot be opened or the style not saved.
    """
    layer = QgsRasterLayer(raster_path, "classes", "gdal")
    if not layer.isValid():
        raise RuntimeError(f"cannot open {raster_path} to style it")
    apply_style(layer, names, colors)
    qml_path = qml_path or qml_path_for(raster_path)
    message, ok = layer.saveNamedStyle(qml_path)
    if not ok:
        raise RuntimeError(f"cannot write the style {qml_path}: {message}")
    return qml_path


class ClassStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies the class palette to the output layer once QGIS has loaded it."""

    def __init__(self, names, colors):
        super().__init__()
        self.names = list(names)
        self.colors = list(colors)

    def postProcessLayer(self, layer, context, feedback):
        if isinstance(layer, QgsRasterLayer) and layer.isValid():
            apply_style(layer, self.names, self.colors)

    @classmethod
    def attach(cls, context, destination, names, colors):
        """Attach to an output that QGIS will load when the algorithm completes."""
        if not context.willLoadLayerOnCompletion(destination):
            return None
        processor = cls(names, colors)
        _KEEP_ALIVE[destination] = processor
        context.layerToLoadOnCompletionDetails(destination).setPostProcessor(processor)
        return processor


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


def write_ramp_qml(raster_path, qml_path=None):
    """Write a sequential-ramp (0..1) .qml beside a raster and return its path.

    Raises:
        RuntimeError: when the raster cannot be opened or the style not saved.
    """
    layer = QgsRasterLayer(raster_path, "uncertainty", "gdal")
    if not layer.isValid():
        raise RuntimeError(f"cannot open {raster_path} to style it")
    layer.setRenderer(ramp_renderer(layer))
    qml_path = qml_path or qml_path_for(raster_path)
    message, ok = layer.saveNamedStyle(qml_path)
    if not ok:
        raise RuntimeError(f"cannot write the style {qml_path}: {message}")
    return qml_path


class RampStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Styles a 0..1 raster output with the sequential ramp once QGIS has loaded it."""

    def postProcessLayer(self, layer, context, feedback):
        if isinstance(layer, QgsRasterLayer) and layer.isValid():
            layer.setRenderer(ramp_renderer(layer))
            layer.triggerRepaint()

    @classmethod
    def attach(cls, context, destination):
        """Attach to an output that QGIS will load when the algorithm completes."""
        if not context.willLoadLayerOnCompletion(destination):
            return None
        processor = cls()
        _KEEP_ALIVE[destination] = processor
        context.layerToLoadOnCompletionDetails(destination).setPostProcessor(processor)
        return processor


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


def write_polygon_qml(layer_source, names, colors, qml_path):
    """Write the class style of a polygon layer as a .qml and return its path.

    Raises:
        RuntimeError: when the layer cannot be opened or the style not saved.
    """
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(layer_source, "polygons", "ogr")
    if not layer.isValid():
        raise RuntimeError(f"cannot open {layer_source} to style it")
    layer.setRenderer(class_polygon_renderer(names, colors))
    message, ok = layer.saveNamedStyle(qml_path)
    if not ok:
        raise RuntimeError(f"cannot write the style {qml_path}: {message}")
    return qml_path


class PolygonStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Styles a class polygon output by class id once QGIS has loaded it."""

    def __init__(self, names, colors):
        super().__init__()
        self.names = list(names)
        self.colors = list(colors)

    def postProcessLayer(self, layer, context, feedback):
        from qgis.core import QgsVectorLayer

        if isinstance(layer, QgsVectorLayer) and layer.isValid():
            layer.setRenderer(class_polygon_renderer(self.names, self.colors))
            layer.triggerRepaint()

    @classmethod
    def attach(cls, context, destination, names, colors):
        """Attach to an output that QGIS will load when the algorithm completes."""
        if not context.willLoadLayerOnCompletion(destination):
            return None
        processor = cls(names, colors)
        _KEEP_ALIVE[destination] = processor
        context.layerToLoadOnCompletionDetails(destination).setPostProcessor(processor)
        return processor
