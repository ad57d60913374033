"""Schema of the sample-design job: ``samplepoints`` (stratified sample for accuracy)."""

from .base import Job, Output, Param

#: How the sample is shared among the strata (map classes).
ALLOCATIONS = ("proportional", "equal", "minimum_then_proportional")

SAMPLEPOINTS = Job(
    name="samplepoints",
    alg_id="samplepoints",
    display_name="Stratified sample for accuracy assessment",
    group_id="assessment",
    group="Accuracy assessment",
    function="accuracy.sampling:sample_points",
    summary=(
        "Draws a stratified random sample of a class map for an accuracy assessment and "
        "area estimate after Olofsson et al. (2014): the strata are the map classes; each "
        "point lies at a random location inside a random pixel of its class; 0 and nodata "
        "pixels are never sampled. The points (GeoPackage, in the map's CRS) carry "
        "map_class, map_name, an empty integer field 'reference' for the analyst to fill "
        "in with the true class id (or name) from better data, and stratum_pixels. Then "
        "run 'Evaluate class map' with the labelled points as REFERENCE.\n\n"
        "SAMPLE_SIZE 0 computes n = (sum_i W_i S_i / S(O))^2 (Olofsson et al. 2014, eq. 13) "
        "with W_i the mapped share of class i, S_i = sqrt(U_i (1 - U_i)) for the "
        "EXPECTED_USER_ACCURACY U_i and S(O) the TARGET_STANDARD_ERROR of overall "
        "accuracy. ALLOCATION minimum_then_proportional gives every class MIN_PER_CLASS "
        "points and the rest in proportion to mapped area; proportional and equal as "
        "named. The map is read twice in windows, so any map size fits in memory."
    ),
    params=(
        Param("INPUT", "raster", "Class map"),
        Param("MODEL", "file", "Model (for class names)", optional=True, extension="keras"),
        Param("CLASS_NAMES", "str", "Or class names (e.g. water,wetland,forest)", optional=True),
        Param(
            "SAMPLE_SIZE",
            "int",
            "Total points (0 = from expected user's accuracies and target standard error)",
            default=0,
            minimum=0,
        ),
        Param("MIN_PER_CLASS", "int", "Minimum points per class", default=50, minimum=2),
        Param(
            "ALLOCATION",
            "choice",
            "Allocation (minimum_then_proportional: MIN_PER_CLASS each, rest by area)",
            default="minimum_then_proportional",
            choices=ALLOCATIONS,
        ),
        Param(
            "EXPECTED_USER_ACCURACY",
            "str",
            "Expected user's accuracy (one number, or one per class) for SAMPLE_SIZE 0",
            default="0.8",
            advanced=True,
        ),
        Param(
            "TARGET_STANDARD_ERROR",
            "float",
            "Target standard error of overall accuracy for SAMPLE_SIZE 0",
            default=0.01,
            minimum=0.0,
            maximum=0.5,
            minimum_open=True,
            advanced=True,
        ),
        Param("SEED", "int", "Random seed (empty = random)", minimum=0, optional=True),
        Param(
            "OUTPUT",
            "vector_out",
            "Sample points",
            help="Sample points (GeoPackage .gpkg)",
        ),
        Param(
            "OUTPUT_TABLE",
            "file_out",
            "Allocation table",
            optional=True,
            create=False,
            file_filter="CSV files (*.csv)",
        ),
    ),
    outputs=(Output("POINTS", "number", "Points drawn"),),
)
