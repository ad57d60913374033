"""Schema of the map post-processing job: ``cleanmap`` (minimum mapping unit, polygons)."""

from .base import Job, Output, Param

#: Pixel neighbourhoods: 4 (edges) or 8 (edges and corners).
CONNECTIVITIES = (4, 8)

CLEANMAP = Job(
    name="cleanmap",
    alg_id="cleanmap",
    display_name="Minimum mapping unit and polygons",
    group_id="mapping",
    group="Mapping",
    function="cleanmap:clean_map",
    summary=(
        "Removes patches smaller than a minimum mapping unit from a class map (ids 1..N, "
        "0 = nodata) and optionally turns the cleaned map into polygons.\n\n"
        "A patch is a connected group of pixels of one class (CONNECTIVITY 4: edge "
        "neighbours; 8: corners too). Every patch smaller than its class's unit (MMU_HA, or "
        "the class's value in MMU_PER_CLASS such as water=0.01,wetland=0.1; hectares, "
        "converted to pixels with the grid's pixel area) takes the class of the neighbouring "
        "patch it shares the longest border with (border = pairs of neighbouring pixels); "
        "neighbours at least as large as their own unit are preferred, so small patches "
        "grow into stable ones. Merging repeats until no patch is below its unit. A small "
        "patch with no classified neighbour (an island in nodata) is kept and counted. "
        "Nodata stays nodata. 0 = no unit for that class. A unit below one pixel is refused.\n\n"
        "OUTPUT_POLYGONS: a GeoPackage with one polygon per patch of the cleaned map: "
        "class_id, class_name, area_ha, and, when PROBABILITIES (predict's "
        "OUTPUT_PROBABILITIES) or UNCERTAINTY (predict's OUTPUT_UNCERTAINTY) rasters on "
        "the same grid are given, mean_probability (of the polygon's class) and "
        "mean_uncertainty. Class names come from MODEL, CLASS_NAMES or the map's own tags "
        "(written by predict). The map must be in a projected CRS (metres or feet): in "
        "degrees the pixel area changes with latitude."
    ),
    params=(
        Param("INPUT", "raster", "Class map (ids 1..N, 0 = nodata)"),
        Param(
            "MODEL", "file", "Model (for class names and colours)", optional=True, extension="keras"
        ),
        Param("CLASS_NAMES", "str", "Or class names (e.g. water,wetland,forest)", optional=True),
        Param("CLASS_COLORS", "str", "Class colours (#rrggbb,...)", optional=True),
        Param(
            "MMU_HA",
            "float",
            "Minimum mapping unit, every class (hectares, 0 = none)",
            default=0.1,
            minimum=0.0,
            key="mmu_ha",
        ),
        Param(
            "MMU_PER_CLASS",
            "str",
            "Units per class (hectares, e.g. water=0.01,wetland=0.1; others use MMU_HA)",
            optional=True,
        ),
        Param(
            "CONNECTIVITY",
            "choice",
            "Pixel connectivity of a patch (4 or 8)",
            default=8,
            choices=CONNECTIVITIES,
        ),
        Param(
            "PROBABILITIES",
            "raster",
            "Class probabilities (predict's, for mean_probability)",
            optional=True,
            advanced=True,
        ),
        Param(
            "UNCERTAINTY",
            "raster",
            "Uncertainty (predict's, for mean_uncertainty)",
            optional=True,
            advanced=True,
        ),
        Param("OUTPUT", "raster_out", "Cleaned class map"),
        Param(
            "OUTPUT_POLYGONS",
            "vector_out",
            "Polygons (GeoPackage)",
            optional=True,
            create=False,
        ),
    ),
    outputs=(
        Output("PATCHES_MERGED", "number", "Patches merged into a neighbour"),
        Output("PIXELS_CHANGED", "number", "Pixels that changed class"),
        Output("POLYGONS", "number", "Polygons written"),
        Output("OUTPUT_STYLE", "file", "Style file (.qml)"),
    ),
)
