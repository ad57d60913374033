"""wetlandunet:alignpair - reproject and pixel-align an image/mask pair onto one grid."""

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.align import align_pair
from .base import WetlandAlgorithm, raster_source
from .feedback import run_core

RESAMPLING_METHODS = ["nearest", "bilinear", "cubic", "cubicspline", "lanczos", "average",
                      "mode"]


class AlignPairAlgorithm(WetlandAlgorithm):
    """Put an image and its label mask (raster or polygons) on one identical pixel grid."""

    IMAGE = "IMAGE"
    MASK = "MASK"
    MASK_VECTOR = "MASK_VECTOR"
    CLASS_FIELD = "CLASS_FIELD"
    CLASS_NAMES = "CLASS_NAMES"
    TARGET_CRS = "TARGET_CRS"
    PIXEL_SIZE = "PIXEL_SIZE"
    RESAMPLING = "RESAMPLING"
    RPC = "RPC"
    OUTPUT_IMAGE = "OUTPUT_IMAGE"
    OUTPUT_MASK = "OUTPUT_MASK"

    ALG_ID = "alignpair"
    DISPLAY_NAME = "Align image and mask"
    GROUP_ID = "preparation"
    GROUP = "Data preparation"
    HELP = (
        "Reprojects and pixel-aligns an image and its label mask onto one grid: same CRS, "
        "same pixel size, same origin, cropped to their common extent.\n\n"
        "The mask is a raster of class ids (any CRS, resolution and extent; resampled with "
        "nearest neighbour, 0 = unlabelled) or a polygon layer whose CLASS_FIELD holds "
        "integer ids (used as they are) or text such as OpenStreetMap's fclass (mapped to "
        "ids 1..N in the order of CLASS_NAMES when given, else sorted; the mapping is "
        "logged and written beside the mask as .classes.json).\n\n"
        "TARGET_CRS defaults to the image's CRS and PIXEL_SIZE (0) to the image's pixel "
        "size; the grid is snapped to the image's pixels, so when the image's own grid is "
        "kept its pixels come out unchanged. Band descriptions and nodata carry over.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.IMAGE, "Image"))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.MASK, "Mask raster (class ids)", optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.MASK_VECTOR, "Or mask polygons", [QgsProcessing.TypeVectorPolygon],
            optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.CLASS_FIELD, "Class field of the polygons", parentLayerParameterName=self.MASK_VECTOR,
            optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_NAMES, "Class names for a text class field, in id order "
            "(e.g. water,wetland,forest)", optional=True))
        self.addParameter(QgsProcessingParameterCrs(
            self.TARGET_CRS, "Target CRS (default: the image's)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.PIXEL_SIZE, "Pixel size in target CRS units (0 = the image's)",
            QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0))
        self.addParameter(QgsProcessingParameterEnum(
            self.RESAMPLING, "Image resampling (the mask always uses nearest)",
            RESAMPLING_METHODS, defaultValue=1))
        self.add_advanced(QgsProcessingParameterBoolean(
            self.RPC, "Orthorectify with the image's RPCs (Planet Basic / 1B scenes)",
            defaultValue=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_IMAGE, "Aligned image"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_MASK, "Aligned mask"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        image = raster_source(self, parameters, self.IMAGE, context, "image")
        mask = raster_source(self, parameters, self.MASK, context, "mask", required=False)
        mask_vector, vector_layer = None, None
        if parameters.get(self.MASK_VECTOR) not in (None, ""):
            source = self.parameterAsSource(parameters, self.MASK_VECTOR, context)
            if source is None:
                raise QgsProcessingException(
                    f"MASK_VECTOR: '{parameters.get(self.MASK_VECTOR)}' is not a vector layer "
                    "QGIS can open; choose a polygon layer.")
            mask_vector, vector_layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
                parameters, self.MASK_VECTOR, context, ["gpkg", "shp", "geojson"], "gpkg",
                feedback)
        if mask is None and mask_vector is None:
            raise QgsProcessingException("Give a mask: MASK (a raster of class ids) or "
                                         "MASK_VECTOR (polygons) with CLASS_FIELD.")
        if mask is not None and mask_vector is not None:
            raise QgsProcessingException("Give either MASK or MASK_VECTOR, not both.")
        class_field = self.parameterAsString(parameters, self.CLASS_FIELD, context) or None
        if mask_vector is not None and not class_field:
            raise QgsProcessingException("CLASS_FIELD is needed with MASK_VECTOR: choose the "
                                         "attribute that holds each polygon's class.")
        names = self.parameterAsString(parameters, self.CLASS_NAMES, context)
        crs = self.parameterAsCrs(parameters, self.TARGET_CRS, context)
        target_crs = crs.toWkt() if crs is not None and crs.isValid() else None
        result = run_core(
            align_pair, feedback,
            image=image,
            output_image=self.parameterAsOutputLayer(parameters, self.OUTPUT_IMAGE, context),
            output_mask=self.parameterAsOutputLayer(parameters, self.OUTPUT_MASK, context),
            mask=mask,
            mask_vector=mask_vector,
            vector_layer=vector_layer or None,
            class_field=class_field,
            class_names=names or None,
            target_crs=target_crs,
            pixel_size=self.parameterAsDouble(parameters, self.PIXEL_SIZE, context),
            resampling=RESAMPLING_METHODS[self.parameterAsEnum(parameters, self.RESAMPLING,
                                                               context)],
            rpc=self.parameterAsBoolean(parameters, self.RPC, context),
        )
        return {self.OUTPUT_IMAGE: result["output_image"], self.OUTPUT_MASK: result["output_mask"]}
