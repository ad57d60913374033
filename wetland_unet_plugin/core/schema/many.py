"""Schemas of the many-scene jobs: ``predictmany`` (in the worker) and ``mergemany``.

``predictmany`` classifies a list of scenes with one loaded model into a folder of
maps, a table of hectares per scene and class, and optionally a mosaic;
``mergemany`` joins the tables (and maps) that several runs wrote, e.g. the array
tasks of a Slurm job (README, "Many scenes").
"""

from .base import Job, Output, Param
from .model import (
    OVERLAP_PARAM,
    PRECISION_PARAM,
    TILE_BATCH_PARAM,
    TILE_SIZE_PARAM,
    TTA_PARAM,
)
from .planet import MASK_CLASSES_PARAM

#: The mosaic's CRS, shared by ``predictmany`` and ``mergemany``.
MOSAIC_CRS_PARAM = Param(
    "TARGET_CRS", "crs", "Mosaic CRS (default: the first scene's)", optional=True
)

PREDICT_MANY = Job(
    name="predictmany",
    alg_id="predictmany",
    display_name="Classify many scenes",
    group_id="deeplearning",
    group="Deep learning",
    function="inference.many:predict_many",
    in_worker=True,
    summary=(
        "Classifies many scenes with one model, loaded once in the worker. Each scene gets "
        "<item id or file stem>_classes.tif (+ .qml) in OUTPUT_FOLDER (the item id is the "
        "Planet id a file name starts with, e.g. 20230405_151523_42_2474). A scene that "
        "cannot be classified (unreadable, wrong bands, no valid pixel) is recorded as "
        "failed with its reason and the others go on; SCENES_FAILED counts "
        "them. OUTPUT_TABLE (CSV) has one row per scene (scene, item_id, acquired, status, "
        "message, valid_ha, masked_ha, <class>_ha) and a total row; hectares are pixels "
        "times the pixel area in metres (in a geographic CRS, each row's pixel area on the "
        "ellipsoid), as predict's OUTPUT_AREAS. SKIP_EXISTING resumes a run: "
        "scenes whose outputs exist are not predicted again (their hectares are read from "
        "their maps). A cancel keeps the finished scenes and removes the one in progress. "
        "PREPARE runs 'Prepare satellite scene' on every scene whose usable-data mask (UDM2) "
        "is delivered beside it: its MASK_CLASSES (and blackfill) become nodata, counted "
        "in masked_ha.\n\n"
        "OUTPUT_MOSAIC: one class map of all good scenes on one grid (TARGET_CRS, default "
        "the first scene's CRS, at the first scene's pixel size). Where scenes overlap, the "
        "most confident prediction wins (the highest probability of its class; a tie keeps "
        "the scene listed first); nodata and masked pixels never win. With a mosaic, each "
        "scene's probabilities are kept as <id>_probabilities.tif, so a resumed run or "
        "'Merge many-scene runs' can build it again."
    ),
    params=(
        Param("INPUTS", "rasters", "Scenes"),
        Param("MODEL", "file", "Model (.keras)", extension="keras"),
        TTA_PARAM,
        Param(
            "PREPARE",
            "bool",
            "Prepare Planet scenes first (mask the UDM2's MASK_CLASSES; scenes without a "
            "usable-data mask beside them are used as they are)",
            default=True,
        ),
        MASK_CLASSES_PARAM,
        Param(
            "SKIP_EXISTING",
            "bool",
            "Skip scenes whose outputs exist (resume a run)",
            default=False,
        ),
        Param(
            "KEEP_PROBABILITIES",
            "bool",
            "Keep each scene's class probabilities (<id>_probabilities.tif; always with a mosaic)",
            default=False,
            advanced=True,
        ),
        Param(
            "KEEP_UNCERTAINTY",
            "bool",
            "Write each scene's uncertainty (<id>_uncertainty.tif: normalised entropy, "
            "0 = certain, 1 = uniform)",
            default=False,
            advanced=True,
        ),
        MOSAIC_CRS_PARAM,
        TILE_SIZE_PARAM,
        OVERLAP_PARAM,
        TILE_BATCH_PARAM,
        PRECISION_PARAM,
        Param("OUTPUT_FOLDER", "folder_out", "Output folder (one class map per scene)"),
        Param(
            "OUTPUT_TABLE",
            "file_out",
            "Hectares per scene and class (CSV; empty = scenes.csv in the output folder)",
            optional=True,
            file_filter="CSV files (*.csv)",
        ),
        Param("OUTPUT_MOSAIC", "raster_out", "Mosaic of all scenes", optional=True, create=False),
    ),
    outputs=(
        Output("SCENES_DONE", "number", "Scenes classified (or kept from an earlier run)"),
        Output("SCENES_FAILED", "number", "Scenes that failed (see the table)"),
    ),
)

MERGE_MANY = Job(
    name="mergemany",
    alg_id="mergemany",
    display_name="Merge many-scene runs",
    group_id="deeplearning",
    group="Deep learning",
    function="merge:merge_many",
    summary=(
        "Joins the OUTPUT_TABLEs of several 'Classify many scenes' runs (e.g. the array tasks "
        "of a Slurm job, each given a share of the scenes) into one table with one total "
        "row. A scene listed by several tables keeps its successful row (the last one when "
        "several succeeded). With FOLDER (the runs' OUTPUT_FOLDER, holding "
        "<id>_classes.tif and <id>_probabilities.tif) and OUTPUT_MOSAIC, the successful "
        "scenes are mosaicked by the same rule as predictmany: the most confident "
        "prediction wins, nodata never wins."
    ),
    params=(
        Param("TABLES", "str", "Tables to merge (CSV paths separated by ;)"),
        Param(
            "FOLDER",
            "folder",
            "Folder of the scenes' maps (for the mosaic)",
            optional=True,
        ),
        MOSAIC_CRS_PARAM,
        Param("OUTPUT_TABLE", "file_out", "Merged table", file_filter="CSV files (*.csv)"),
        Param("OUTPUT_MOSAIC", "raster_out", "Mosaic", optional=True, create=False),
    ),
    outputs=(
        Output("SCENES_DONE", "number", "Scenes classified"),
        Output("SCENES_FAILED", "number", "Scenes that failed"),
    ),
)
