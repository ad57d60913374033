"""Schemas of the data-preparation jobs: ``alignpair`` and ``cleaninvalid``."""

from .base import Job, Output, Param

#: GDAL resampling methods offered for the image (the mask always uses nearest).
RESAMPLING_METHODS = (
    "nearest",
    "bilinear",
    "cubic",
    "cubicspline",
    "lanczos",
    "average",
    "mode",
    "max",
    "min",
    "med",
    "q1",
    "q3",
    "sum",
    "rms",
)
#: What ``cleaninvalid`` puts in place of invalid values.
CLEAN_MODES = ("nodata", "constant", "interpolate")

ALIGN = Job(
    name="align",
    alg_id="alignpair",
    display_name="Align image and mask",
    group_id="preparation",
    group="Data preparation",
    function="alignment.align:align_pair",
    summary=(
        "Reprojects and pixel-aligns an image and its label mask onto one grid: same CRS, "
        "same pixel size, same origin, cropped to their common extent.\n\n"
        "The mask is a raster of class ids (any CRS, resolution and extent; resampled with "
        "nearest neighbour, 0 = unlabelled) or a polygon layer whose CLASS_FIELD holds "
        "integer ids (used as they are) or text such as OpenStreetMap's fclass (mapped to "
        "ids 1..N in the order of CLASS_NAMES when given, else sorted; the mapping is "
        "logged and written beside the mask as .classes.json). Where the aligned image is "
        "invalid (nodata, NaN, a GDAL mask, outside the image) the aligned mask holds no "
        "label; the log counts the labels dropped.\n\n"
        "TARGET_CRS defaults to the image's CRS and PIXEL_SIZE (0) to the image's pixel "
        "size; the grid is snapped to the image's pixels, so when the image's own grid is "
        "kept its pixels come out unchanged. Band descriptions and nodata carry over.\n\n"
        "RPC orthorectifies a basic / 1B scene with its RPCs and the heights of DEM; without "
        "a DEM the RPCs' height offset (the scene's mean height, not 0 m) is used and the log "
        "says how far each 100 m of relief moves the pixels. Without a mask the image alone "
        "is aligned (orthorectified) over its whole extent."
    ),
    params=(
        Param("IMAGE", "raster", "Image"),
        Param("MASK", "raster", "Mask raster (class ids)", optional=True),
        Param("MASK_VECTOR", "vector", "Or mask polygons", optional=True, geometry="polygon"),
        Param(
            "VECTOR_LAYER",
            "str",
            "Layer of MASK_VECTOR (a GeoPackage with several)",
            optional=True,
            processing=False,
        ),
        Param(
            "CLASS_FIELD",
            "field",
            "Class field of the polygons",
            optional=True,
            parent="MASK_VECTOR",
        ),
        Param(
            "CLASS_NAMES",
            "str",
            "Class names for a text class field, in id order (e.g. water,wetland,forest)",
            optional=True,
        ),
        Param("TARGET_CRS", "crs", "Target CRS (default: the image's)", optional=True),
        Param(
            "PIXEL_SIZE",
            "float",
            "Pixel size in target CRS units (0 = the image's)",
            default=0.0,
            minimum=0.0,
        ),
        Param(
            "RESAMPLING",
            "choice",
            "Image resampling (the mask always uses nearest)",
            default="bilinear",
            choices=RESAMPLING_METHODS,
        ),
        Param(
            "RPC",
            "bool",
            "Orthorectify with the image's RPCs (Planet Basic / 1B scenes)",
            default=False,
            advanced=True,
        ),
        Param(
            "DEM",
            "raster",
            "DEM for RPC orthorectification (empty: the RPCs' height offset everywhere)",
            optional=True,
            advanced=True,
        ),
        Param("OUTPUT_IMAGE", "raster_out", "Aligned image"),
        Param(
            "OUTPUT_MASK", "raster_out", "Aligned mask (with MASK or MASK_VECTOR)", optional=True
        ),
    ),
)

CLEAN = Job(
    name="clean",
    alg_id="cleaninvalid",
    display_name="Clean invalid pixels",
    group_id="preparation",
    group="Data preparation",
    function="clean:clean_invalid",
    summary=(
        "Finds NaN, +Inf, -Inf, the raster's nodata value and the values you list "
        "(default -1) in every band, and makes them nodata (MODE nodata), a constant "
        "(MODE constant, FILL_VALUE) or fills them from their neighbours (MODE "
        "interpolate, GDAL's fill-nodata). Valid values are copied unchanged. "
        "INVALID_COUNT is the number of band values replaced; the log lists them per band. "
        "Works block by block, so scenes of any size fit in memory."
    ),
    params=(
        Param("INPUT", "raster", "Input raster"),
        Param(
            "INVALID_VALUES",
            "str",
            "Other invalid values, comma separated (NaN, Inf and nodata always count)",
            default="-1",
            optional=True,
        ),
        Param(
            "MODE",
            "choice",
            "Replace invalid values with (nodata, constant: FILL_VALUE, "
            "interpolate: from the neighbours)",
            default="nodata",
            choices=CLEAN_MODES,
        ),
        Param("FILL_VALUE", "float", "Fill value (MODE constant)", default=0.0),
        Param(
            "NODATA",
            "str",
            "Nodata value to write (default: the input's, else a value outside the data)",
            optional=True,
            processing=False,
        ),
        Param(
            "MAX_DISTANCE",
            "int",
            "Farthest pixels to interpolate from (MODE interpolate)",
            default=100,
            minimum=1,
            advanced=True,
        ),
        Param("OUTPUT", "raster_out", "Cleaned raster"),
    ),
    outputs=(Output("INVALID_COUNT", "number", "Invalid values found"),),
)
