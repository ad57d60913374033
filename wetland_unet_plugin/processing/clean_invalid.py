"""wetlandunet:cleaninvalid - make NaN, Inf, nodata and listed values nodata, or fill them."""

from ..core.schema import CLEAN
from .base import WetlandAlgorithm


class CleanInvalidAlgorithm(WetlandAlgorithm):
    """Find invalid pixels (NaN, +-Inf, nodata, -1, ...) and make them nodata or fill them."""

    JOB = CLEAN
