"""``merge_many``: one table (and mosaic) from several ``predictmany`` runs, the
``mergemany`` job.

Built for clusters: each array task of a Slurm job classifies its share of the
scenes into one shared OUTPUT_FOLDER and writes its own OUTPUT_TABLE; a last
step merges the tables and mosaics the maps (README, "Many scenes").
"""

from __future__ import annotations

import glob
import os

from . import raster as rasterlib
from .feedback import CoreError, Feedback
from .mosaic import build_mosaic
from .scenetable import GOOD, read_table, write_table
from .schema.many import MERGE_MANY


def table_paths(tables) -> list:
    """The CSV paths of TABLES: paths separated by ``;`` (or a list), or folders
    (every ``*.csv`` in them, sorted).

    Raises:
        CoreError: for a missing path, or when no table is given.
    """
    items = tables if isinstance(tables, (list, tuple)) else str(tables or "").split(";")
    paths = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        if os.path.isdir(item):
            paths.extend(sorted(glob.glob(os.path.join(glob.escape(item), "*.csv"))))
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise CoreError(f"TABLES: '{item}' does not exist: give the runs' OUTPUT_TABLEs.")
    if not paths:
        raise CoreError("TABLES: no table given (CSV files separated by ';', or a folder).")
    return paths


def merge_rows(tables: list) -> tuple:
    """Rows of several tables, one per scene, and their class names.

    A scene listed by several tables keeps a row whose status is done or skipped
    (the last such row) over a failed one; scenes keep the order they first appear in.

    Raises:
        CoreError: when the tables list different classes (maps of different models).
    """
    merged: dict = {}
    names = None
    for path in tables:
        rows, these = read_table(path)
        if names is None:
            names = these
        elif these != names:
            raise CoreError(
                f"'{path}' has the classes {', '.join(these)} but the first table has "
                f"{', '.join(names)}: merge only runs of the same model."
            )
        for row in rows:
            old = merged.get(row["scene"])
            if old is None or row["status"] in GOOD or old["status"] not in GOOD:
                merged[row["scene"]] = row
    return list(merged.values()), names or []


def merge_many(
    tables=None, folder=None, output_table=None, output_mosaic=None, *, feedback=None, **params
) -> dict:
    """Merge the tables (and maps) of several ``predictmany`` runs.

    Args:
        tables, folder, output_table, output_mosaic, **params: the parameters of
            ``schema.MERGE_MANY`` by keyword: ``tables`` (CSV paths separated by ``;``,
            or folders of them), ``folder`` (where the runs wrote ``<id>_classes.tif``
            and ``<id>_probabilities.tif``; needed for a mosaic), ``target_crs``.
        feedback: progress, messages, cancel.

    Returns:
        dict with ``output_table``, ``output_mosaic`` (or None), ``scenes_done``,
        ``scenes_failed``, ``tables`` (the tables read).

    Raises:
        CoreError: for unreadable or mismatched tables, a mosaic without FOLDER or
            with missing maps; checked before anything is written.
    """
    feedback = feedback or Feedback()
    p = MERGE_MANY.check(
        dict(
            params,
            tables=tables,
            folder=folder,
            output_table=output_table,
            output_mosaic=output_mosaic,
        )
    )
    paths = table_paths(p["tables"])
    out, mosaic = p["output_table"], p["output_mosaic"] or None
    if not out:
        raise CoreError("OUTPUT_TABLE is required: choose the merged table's file.")
    rasterlib.check_output_path(out, paths, what="OUTPUT_TABLE")
    rows, names = merge_rows(paths)
    good = [r for r in rows if r["status"] in GOOD]
    scenes = []
    if mosaic:
        if not p["folder"]:
            raise CoreError("OUTPUT_MOSAIC needs FOLDER: the runs' OUTPUT_FOLDER with the maps.")
        rasterlib.check_output_path(mosaic, paths, what="OUTPUT_MOSAIC")
        for row in good:
            base = os.path.join(p["folder"], row["item_id"])
            pair = (base + "_classes.tif", base + "_probabilities.tif")
            missing = [x for x in pair if not os.path.exists(x)]
            if missing:
                raise CoreError(
                    f"Scene {row['scene']} is mapped in the tables but {missing[0]} is "
                    "missing: give the FOLDER the runs wrote to (they keep probabilities "
                    "when they make a mosaic, or with KEEP_PROBABILITIES)."
                )
            scenes.append(pair)
    write_table(out, rows, names)
    feedback.info(f"{len(paths)} tables, {len(rows)} scenes merged into {out}.")
    made = None
    if mosaic and scenes:
        build_mosaic(scenes, mosaic, p["target_crs"], feedback)
        made = mosaic
    elif mosaic:
        feedback.warning("No scene is mapped in the tables, so no mosaic was written.")
    feedback.progress(1.0)
    return {
        "output_table": out,
        "output_mosaic": made,
        "scenes_done": len(good),
        "scenes_failed": len(rows) - len(good),
        "tables": paths,
    }
