"""Schemas of the Planet jobs: ``preparescene`` (a delivered scene made analysis-ready)."""

from __future__ import annotations

from .base import Job, Output, Param

#: MASK_CLASSES choices (UDM2 classes) and their default.
MASK_CLASS_CHOICES = ("cloud", "shadow", "heavy_haze", "light_haze", "snow")
DEFAULT_MASK_CLASSES = ["cloud", "shadow", "heavy_haze"]  # a list, as QGIS and the CLI hold it
RADIOMETRY_CHOICES = ("as_is", "reflectance")

#: UDM2 classes to mask, shared by ``preparescene`` and ``predictmany`` (declared once).
MASK_CLASSES_PARAM = Param(
    "MASK_CLASSES",
    "choices",
    "UDM2 classes to mask (blackfill and unusable data are always masked)",
    default=DEFAULT_MASK_CLASSES,
    choices=MASK_CLASS_CHOICES,
)

PREPARE_SCENE = Job(
    name="preparescene",
    alg_id="preparescene",
    display_name="Prepare satellite scene",
    group_id="preparation",
    group="Data preparation",
    function="planet.prepare:prepare_scene",
    summary=(
        "Makes a delivered scene analysis-ready. Pixels the usable-data mask marks "
        "(UDM2: the MASK_CLASSES, plus blackfill and unusable data always; a legacy UDM: "
        "every flagged pixel), grown by MASK_BUFFER pixels, and the scene's own nodata "
        "become nodata. When UDM is empty the scene's own UDM2 is found beside it by its "
        "Planet item id (the log says which file). Bands get canonical names (4 bands: "
        "blue, green, red, nir; 8 bands: coastal_blue, blue, green_i, green, yellow, red, "
        "red_edge, nir), so wetlandunet:predict picks a model's bands by name. RADIOMETRY "
        "reflectance divides surface reflectance by 10000, or converts TOA radiance with "
        "the reflectance coefficients of the scene's metadata XML. ITEM_ID and ACQUIRED "
        "come from the file name and the delivery's JSON/XML. A basic (1B) scene with RPCs "
        "is masked on its own grid, then orthorectified with DEM (else the RPCs' height "
        "offset), TARGET_CRS and PIXEL_SIZE."
    ),
    params=(
        Param("INPUT", "raster", "Scene (e.g. <item id>_3B_AnalyticMS_SR_8b_clip.tif)"),
        Param(
            "UDM",
            "raster",
            "Usable-data mask (UDM2 or legacy UDM; empty = the scene's own, found beside it)",
            optional=True,
        ),
        MASK_CLASSES_PARAM,
        Param(
            "MASK_BUFFER",
            "int",
            "Pixels grown around masked pixels",
            default=0,
            minimum=0,
            maximum=100,
        ),
        Param(
            "RADIOMETRY",
            "choice",
            "Radiometry (as_is: values kept; reflectance: 0..1 reflectance)",
            default="as_is",
            choices=RADIOMETRY_CHOICES,
        ),
        Param(
            "DEM",
            "raster",
            "DEM for scenes with RPCs (basic / 1B): orthorectify with it",
            optional=True,
            advanced=True,
        ),
        Param(
            "TARGET_CRS",
            "crs",
            "Target CRS (default: the scene's; for RPC scenes their UTM zone)",
            optional=True,
            advanced=True,
        ),
        Param(
            "PIXEL_SIZE",
            "float",
            "Pixel size in target CRS units (0 = the scene's)",
            default=0.0,
            minimum=0.0,
            advanced=True,
        ),
        Param("OUTPUT", "raster_out", "Prepared scene"),
    ),
    outputs=(
        Output("MASKED_PIXELS", "number", "Pixels masked by the usable-data mask"),
        Output("VALID_PIXELS", "number", "Valid pixels in the output"),
        Output("ITEM_ID", "string", "Planet item id"),
        Output("ACQUIRED", "string", "Acquisition time"),
    ),
)
