"""Schemas of the assessment jobs: ``evaluate`` and ``styleclassified``."""

from .base import Job, Output, Param

EVALUATE = Job(
    name="evaluate",
    alg_id="evaluate",
    display_name="Evaluate class map",
    group_id="assessment",
    group="Accuracy assessment",
    function="evaluate:evaluate_map",
    summary=(
        "Compares a class map (ids 1..N) with a reference raster of class ids; reference "
        "pixels that are 0 or nodata are unlabelled and ignored. A reference on another grid "
        "is aligned to the map with nearest neighbour. Writes the confusion matrix (CSV, "
        "rows = reference, columns = prediction), an HTML report with a confusion-matrix "
        "figure and per-class precision, recall, F1 and IoU, and returns overall accuracy, "
        "Cohen's kappa and mean IoU. Class names come from MODEL or CLASS_NAMES.\n\n"
        "REFERENCE may also be a point layer labelled in REFERENCE_FIELD (class ids or "
        "names; default field 'reference'), such as the labelled output of 'Stratified "
        "sample for accuracy assessment'. Points carrying map_class (or with STRATIFIED on) "
        "are a stratified sample of the map: the report then gives the error matrix in area "
        "proportions, overall, user's and producer's accuracy, and every class's mapped "
        "area and estimated area in hectares, each with a 95 % confidence interval "
        "(stratified estimators of Olofsson et al. 2014; strata weights from the map's "
        "pixel counts over its valid area); OUTPUT_AREAS holds the per-class table. Points "
        "outside the map, on nodata or with an empty reference are skipped and counted; "
        "points in another CRS are reprojected."
    ),
    params=(
        Param("PREDICTION", "raster", "Class map"),
        Param("REFERENCE", "layer", "Reference (class raster, or labelled points)"),
        Param("MODEL", "file", "Model (for class names)", optional=True, extension="keras"),
        Param("CLASS_NAMES", "str", "Or class names (e.g. water,wetland,forest)", optional=True),
        Param(
            "REFERENCE_FIELD",
            "field",
            "Reference field of the points (class ids or names; empty = 'reference')",
            optional=True,
            parent="REFERENCE",
        ),
        Param(
            "STRATIFIED",
            "bool",
            "Points are a stratified sample of the map by class (on by itself with map_class)",
            default=False,
        ),
        Param(
            "OUTPUT_HTML", "file_out", "Report", optional=True, file_filter="HTML files (*.html)"
        ),
        Param(
            "OUTPUT_TABLE",
            "file_out",
            "Confusion matrix",
            optional=True,
            file_filter="CSV files (*.csv)",
        ),
        Param(
            "OUTPUT_AREAS",
            "file_out",
            "Area estimates with 95 % intervals (stratified points)",
            optional=True,
            create=False,
            file_filter="CSV files (*.csv)",
        ),
    ),
    outputs=(
        Output("OVERALL_ACCURACY", "number", "Overall accuracy"),
        Output("KAPPA", "number", "Cohen's kappa"),
        Output("MEAN_IOU", "number", "Mean IoU"),
    ),
)

#: Styling needs QGIS (its renderer writes the .qml): a Processing algorithm only.
STYLE = Job(
    name="style",
    alg_id="styleclassified",
    display_name="Style class map",
    group_id="assessment",
    group="Accuracy assessment",
    function="",
    summary=(
        "Writes a QGIS style (.qml, a paletted renderer: class id -> colour and name) for a "
        "raster of class ids 1..N, from a model file's classes or from CLASS_NAMES and "
        "CLASS_COLORS (#rrggbb, automatic when empty), and styles the layer when it is in "
        "the project. With no OUTPUT_STYLE the style is written beside the raster, where "
        "QGIS finds it by itself."
    ),
    params=(
        Param("INPUT", "raster", "Class raster"),
        Param("MODEL", "file", "Model (.keras) with the classes", optional=True, extension="keras"),
        Param("CLASS_NAMES", "str", "Or class names (e.g. water,wetland,forest)", optional=True),
        Param("CLASS_COLORS", "str", "Class colours (#rrggbb,...)", optional=True),
        Param(
            "OUTPUT_STYLE",
            "file_out",
            "Style file",
            optional=True,
            create=False,
            file_filter="QGIS style (*.qml)",
        ),
    ),
    outputs=(Output("OUTPUT", "raster", "Styled class raster"),),
)
