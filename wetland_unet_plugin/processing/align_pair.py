"""wetlandunet:alignpair - reproject and pixel-align an image/mask pair onto one grid."""

from qgis.core import QgsProcessingException

from ..core.schema import ALIGN
from .base import WetlandAlgorithm


class AlignPairAlgorithm(WetlandAlgorithm):
    """Put an image and its label mask (raster or polygons) on one identical pixel grid."""

    JOB = ALIGN

    def prepare(self, values, parameters, context, feedback):
        if values["mask"] is None and values["mask_vector"] is None:
            raise QgsProcessingException("Give a mask: MASK (a raster of class ids) or "
                                         "MASK_VECTOR (polygons) with CLASS_FIELD.")
        if values["mask"] is not None and values["mask_vector"] is not None:
            raise QgsProcessingException("Give either MASK or MASK_VECTOR, not both.")
        if values["mask_vector"] is not None and not values["class_field"]:
            raise QgsProcessingException("CLASS_FIELD is needed with MASK_VECTOR: choose the "
                                         "attribute that holds each polygon's class.")
        return values
