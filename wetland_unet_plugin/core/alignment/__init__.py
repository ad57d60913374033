"""Align an image and its label mask onto one pixel grid, cropped to their common extent.

Modules, in the order the job uses them:

* :mod:`.align` - :func:`align_pair`, the job: checks, target CRS, orchestration.
* :mod:`.crs` - CRS parsing, naming and comparison; bounds between CRSs; UTM zones.
* :mod:`.polygons` - opening the mask's vector layer, reading, densifying and
  reprojecting its polygons.
* :mod:`.classmap` - class-field values to ids 1..N and the ``.classes.json``
  written beside the mask.
* :mod:`.grid` - the output grid: the image's own, or a snapped one in the
  target CRS, cropped to the overlap.
* :mod:`.warp` - copying or warping the image, resampling the mask raster.
* :mod:`.rasterize` - burning polygons into the mask.
* :mod:`.gdal_feedback` - GDAL error messages and progress as CoreError and Feedback.
"""

from .align import align_pair
from .classmap import CLASSES_SUFFIX
from .warp import RESAMPLING_METHODS

__all__ = ["align_pair", "CLASSES_SUFFIX", "RESAMPLING_METHODS"]
