"""What every Wetland U-Net algorithm shares: names, group, icon, help."""

from qgis.core import QgsProcessingAlgorithm, QgsProcessingParameterDefinition

from .provider import icon


class WetlandAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses set ALG_ID, DISPLAY_NAME, GROUP_ID, GROUP and HELP."""

    ALG_ID = ""
    DISPLAY_NAME = ""
    GROUP_ID = ""
    GROUP = ""
    HELP = ""

    def name(self):
        return self.ALG_ID

    def displayName(self):  # noqa: N802
        return self.DISPLAY_NAME

    def group(self):
        return self.GROUP

    def groupId(self):  # noqa: N802
        return self.GROUP_ID

    def shortHelpString(self):  # noqa: N802
        return self.HELP

    def icon(self):
        return icon()

    def createInstance(self):  # noqa: N802
        return type(self)()

    def add_advanced(self, parameter):
        """Add a parameter flagged as advanced (collapsed in the dialog)."""
        parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(parameter)
        return parameter


def raster_source(algorithm, parameters, name, context, what, required=True):
    """Return the file path of a raster parameter, or None when optional and unset.

    Raises:
        QgsProcessingException: when it is not a raster GDAL can read from a file.
    """
    from qgis.core import QgsProcessingException

    value = parameters.get(name)
    if value is None or value == "":
        if required:
            raise QgsProcessingException(f"{name}: no {what} given; choose a raster layer.")
        return None
    layer = algorithm.parameterAsRasterLayer(parameters, name, context)
    if layer is None or not layer.isValid():
        raise QgsProcessingException(f"{name}: '{value}' is not a raster layer QGIS can open; "
                                     f"choose a GeoTIFF or another GDAL raster as the {what}.")
    if layer.providerType() != "gdal":
        raise QgsProcessingException(f"{name}: the {what} comes from the '{layer.providerType()}' "
                                     "provider; save it as a GeoTIFF first (Export > Save As).")
    return layer.source()
