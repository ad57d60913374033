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
