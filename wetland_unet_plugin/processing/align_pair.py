"""wetlandunet:alignpair - reproject and pixel-align an image/mask pair onto one grid."""

from ..core.schema import ALIGN
from .base import WetlandAlgorithm


class AlignPairAlgorithm(WetlandAlgorithm):
    """Put an image and its label mask (raster or polygons) on one identical pixel grid.

    The core checks the mask choice (MASK or MASK_VECTOR with CLASS_FIELD) before any work.
    """

    JOB = ALIGN
