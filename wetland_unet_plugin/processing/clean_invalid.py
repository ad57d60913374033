"""wetlandunet:cleaninvalid - make NaN, Inf, nodata and listed values nodata, or fill them."""

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.clean import clean_invalid
from .base import WetlandAlgorithm, raster_source
from .feedback import run_core

MODES = ["nodata", "constant", "interpolate"]


class CleanInvalidAlgorithm(WetlandAlgorithm):
    """Find invalid pixels (NaN, +-Inf, nodata, -1, ...) and make them nodata or fill them."""

    INPUT = "INPUT"
    INVALID_VALUES = "INVALID_VALUES"
    MODE = "MODE"
    FILL_VALUE = "FILL_VALUE"
    OUTPUT = "OUTPUT"
    INVALID_COUNT = "INVALID_COUNT"

    ALG_ID = "cleaninvalid"
    DISPLAY_NAME = "Clean invalid pixels"
    GROUP_ID = "preparation"
    GROUP = "Data preparation"
    HELP = (
        "Finds NaN, +Inf, -Inf, the raster's nodata value and the values you list "
        "(default -1) in every band, and makes them nodata (MODE nodata), a constant "
        "(MODE constant, FILL_VALUE) or fills them from their neighbours (MODE "
        "interpolate, GDAL's fill-nodata). Valid values are copied unchanged. "
        "INVALID_COUNT is the number of band values replaced; the log lists them per band. "
        "Works block by block, so scenes of any size fit in memory.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        self.addParameter(QgsProcessingParameterString(
            self.INVALID_VALUES, "Other invalid values, comma separated (NaN, Inf and nodata "
            "always count)", defaultValue="-1", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.MODE, "Replace invalid values with", ["nodata", "a constant (FILL_VALUE)",
                                                       "values interpolated from neighbours"],
            defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.FILL_VALUE, "Fill value (MODE constant)", QgsProcessingParameterNumber.Double,
            defaultValue=0.0))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Cleaned raster"))
        self.addOutput(QgsProcessingOutputNumber(self.INVALID_COUNT, "Invalid values found"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        source = raster_source(self, parameters, self.INPUT, context, "input raster")
        result = run_core(
            clean_invalid, feedback,
            input=source,
            output=self.parameterAsOutputLayer(parameters, self.OUTPUT, context),
            invalid_values=self.parameterAsString(parameters, self.INVALID_VALUES, context),
            mode=MODES[self.parameterAsEnum(parameters, self.MODE, context)],
            fill_value=self.parameterAsDouble(parameters, self.FILL_VALUE, context),
        )
        return {self.OUTPUT: result["output"], self.INVALID_COUNT: result["invalid_count"]}
