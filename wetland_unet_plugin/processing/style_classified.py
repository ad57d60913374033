"""wetlandunet:styleclassified - apply a class palette to any class raster."""

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputRasterLayer,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.classes import default_colors, parse_class_names, parse_colors
from ..core.feedback import CoreError
from .base import WetlandAlgorithm, raster_source
from .model_info import model_metadata, names_and_colors
from .styling import apply_style, qml_path_for, write_qml


class StyleClassifiedAlgorithm(WetlandAlgorithm):
    """Style a raster of class ids 1..N with names and colours from a model or given by hand."""

    INPUT = "INPUT"
    MODEL = "MODEL"
    CLASS_NAMES = "CLASS_NAMES"
    CLASS_COLORS = "CLASS_COLORS"
    OUTPUT_STYLE = "OUTPUT_STYLE"
    OUTPUT = "OUTPUT"

    ALG_ID = "styleclassified"
    DISPLAY_NAME = "Style class map"
    GROUP_ID = "assessment"
    GROUP = "Accuracy assessment"
    HELP = (
        "Writes a QGIS style (.qml, a paletted renderer: class id -> colour and name) for a "
        "raster of class ids 1..N, from a model file's classes or from CLASS_NAMES and "
        "CLASS_COLORS (#rrggbb, automatic when empty), and styles the layer when it is in "
        "the project. With no OUTPUT_STYLE the style is written beside the raster, where "
        "QGIS finds it by itself.")

    def flags(self):
        # Styles a project layer: run on the main thread, where layers may be touched.
        return super().flags() | QgsProcessingAlgorithm.FlagNoThreading

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Class raster"))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "Model (.keras) with the classes", extension="keras", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_NAMES, "Or class names (e.g. water,wetland,forest)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_COLORS, "Class colours (#rrggbb,...)", optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_STYLE, "Style file", "QGIS style (*.qml)", optional=True,
            createByDefault=False))
        self.addOutput(QgsProcessingOutputRasterLayer(self.OUTPUT, "Styled class raster"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        source = raster_source(self, parameters, self.INPUT, context, "class raster")
        model = self.parameterAsFile(parameters, self.MODEL, context)
        text_names = self.parameterAsString(parameters, self.CLASS_NAMES, context)
        text_colors = self.parameterAsString(parameters, self.CLASS_COLORS, context)
        try:
            if model:
                names, colors = names_and_colors(model_metadata(model))
                if text_colors:
                    colors = parse_colors(text_colors, len(names))
            elif text_names:
                names = parse_class_names(text_names)
                colors = parse_colors(text_colors, len(names)) or default_colors(names)
            else:
                raise QgsProcessingException("Give MODEL (a .keras model) or CLASS_NAMES to "
                                             "say which class each id is.")
        except CoreError as err:
            raise QgsProcessingException(str(err)) from None
        qml = self.parameterAsFileOutput(parameters, self.OUTPUT_STYLE, context) or \
            qml_path_for(source)
        try:
            write_qml(source, names, colors, qml)
        except RuntimeError as err:
            raise QgsProcessingException(str(err)) from None
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is not None and context.project() is not None and \
                context.project().mapLayer(layer.id()) is not None:
            apply_style(layer, names, colors)
        for index, (name, color) in enumerate(zip(names, colors), start=1):
            feedback.pushInfo(f"{index}: {name} {color}")
        return {self.OUTPUT_STYLE: qml, self.OUTPUT: source}
