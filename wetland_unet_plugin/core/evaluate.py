"""Accuracy assessment of a class map against a reference (no TensorFlow).

The prediction's grid is the frame: the reference is read through a
nearest-neighbour ``WarpedVRT`` onto it when the grids differ, window by window,
so neither raster is ever loaded whole. Reference pixels that are 0, nodata or
outside the reference are unlabelled and ignored; so are prediction pixels that
are 0 or nodata. A multi-band reference is read as one-hot (class = band with
the largest value, unlabelled where every band is 0), as the seed's masks were.

Class names come from the model's metadata (read without TensorFlow), else
CLASS_NAMES, else the ``class_names`` tag predict writes into its outputs, else
"class 1", "class 2", ...
"""

from __future__ import annotations

import contextlib
import csv
import html
import json
import math
import os
import time

import numpy as np

from . import metrics
from . import raster as rasterlib
from .atomic import atomic_output
from .classes import parse_class_names
from .feedback import CoreError, Feedback
from .modelfile import read_metadata
from .schema import EVALUATE

#: Rows read per window.
WINDOW_ROWS = 512


# --------------------------------------------------------------------------- inputs


def resolve_class_names(model=None, class_names=None, prediction_tags=None) -> list | None:
    """Pick class names: model metadata, else CLASS_NAMES, else the prediction's tag.

    Args:
        model: optional model file path (read without TensorFlow).
        class_names: optional list or "a,b,c".
        prediction_tags: the prediction raster's dataset tags.

    Returns:
        The names, or None when nothing names the classes.
    """
    if model:
        names = read_metadata(model).get("class_names")
        if names:
            return [str(n) for n in names]
    if class_names:
        return parse_class_names(class_names)
    tag = (prediction_tags or {}).get("class_names")
    if tag:
        with contextlib.suppress(ValueError, TypeError):
            names = json.loads(tag)
            if isinstance(names, list) and names:
                return [str(n) for n in names]
    return None


def _check_overlap(pred, ref) -> None:
    from rasterio.warp import transform_bounds

    if pred.crs is None or ref.crs is None:
        if (pred.crs is None) != (ref.crs is None):
            raise CoreError(
                "One of PREDICTION and REFERENCE has no CRS, so they cannot be "
                "matched: assign the missing CRS (Raster > Projections > Assign "
                "Projection) and run again."
            )
        bounds = ref.bounds
    else:
        bounds = transform_bounds(ref.crs, pred.crs, *ref.bounds, densify_pts=21)
    left, bottom, right, top = pred.bounds
    if bounds[0] >= right or bounds[2] <= left or bounds[1] >= top or bounds[3] <= bottom:
        raise CoreError(
            "PREDICTION and REFERENCE do not overlap: "
            f"prediction {rasterlib.grid_description(pred)}; reference "
            f"{rasterlib.grid_description(ref)}. Choose the reference for this "
            "scene (check both CRSs)."
        )


@contextlib.contextmanager
def _reference_on_grid(pred, ref):
    """Yield a reader of the reference on the prediction's grid (the dataset itself if same)."""
    if rasterlib.same_grid(pred, ref) or (
        pred.crs is None
        and ref.crs is None
        and (pred.width, pred.height) == (ref.width, ref.height)
    ):
        yield ref
        return
    if pred.crs is None:
        raise CoreError(
            "PREDICTION and REFERENCE are on different grids and have no CRS: "
            "align them first (wetlandunet:alignpair)."
        )
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    options = dict(
        crs=pred.crs,
        transform=pred.transform,
        width=pred.width,
        height=pred.height,
        resampling=Resampling.nearest,
        nodata=0,
    )
    if ref.nodata is not None:
        options["src_nodata"] = ref.nodata
    with WarpedVRT(ref, **options) as vrt:
        yield vrt


def class_ids(block: np.ndarray, nodata=None) -> np.ndarray:
    """Turn a read block into class ids, 0 = unlabelled.

    Args:
        block: (bands, rows, cols); one band of ids, or several one-hot bands.
        nodata: the raster's nodata value (becomes 0).

    Returns:
        (rows, cols) int64 ids.
    """
    if block.shape[0] > 1:
        values = np.nan_to_num(block.astype(np.float64), nan=0.0)
        if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
            values[block == nodata] = 0.0
        ids = values.argmax(axis=0) + 1
        ids[values.max(axis=0) <= 0] = 0
        return ids.astype(np.int64)
    band = block[0]
    invalid = np.zeros(band.shape, dtype=bool)
    if np.issubdtype(band.dtype, np.floating):
        invalid |= ~np.isfinite(band)
        band = np.where(invalid, 0, np.rint(band))
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        invalid |= block[0] == nodata
    ids = band.astype(np.int64)
    ids[invalid | (ids < 0)] = 0
    return ids


# --------------------------------------------------------------------------- outputs


def _fmt(value) -> str:
    return (
        ""
        if value is None or (isinstance(value, float) and not math.isfinite(value))
        else f"{value:.6f}"
    )


def write_table(path: str, matrix: np.ndarray, names: list, score: dict) -> None:
    """Write the confusion matrix and metrics as CSV (atomically).

    Layout: a header row ``reference \\ predicted, <names>, total, precision, recall,
    f1, iou``; one row per reference class; a ``total`` row; an empty row; then
    ``metric, value`` rows for overall accuracy, kappa, mean IoU, mean F1, pixels.
    """
    with atomic_output(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["reference \\ predicted", *names, "total", "precision", "recall", "f1", "iou"]
            )
            for i, name in enumerate(names):
                writer.writerow(
                    [
                        name,
                        *[int(v) for v in matrix[i]],
                        int(matrix[i].sum()),
                        _fmt(score["precision"][i]),
                        _fmt(score["recall"][i]),
                        _fmt(score["f1"][i]),
                        _fmt(score["iou"][i]),
                    ]
                )
            writer.writerow(["total", *[int(v) for v in matrix.sum(axis=0)], int(matrix.sum())])
            writer.writerow([])
            writer.writerow(["metric", "value"])
            for key in ("overall_accuracy", "kappa", "mean_iou", "mean_f1"):
                writer.writerow([key, _fmt(score[key])])
            writer.writerow(["pixels", int(matrix.sum())])


def _matrix_html(matrix: np.ndarray, names: list) -> str:
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for i, name in enumerate(names):
        cells = "".join(f"<td>{int(v):,}</td>" for v in matrix[i])
        rows.append(
            f"<tr><th>{html.escape(name)}</th>{cells}<td>{int(matrix[i].sum()):,}</td></tr>"
        )
    totals = "".join(f"<td>{int(v):,}</td>" for v in matrix.sum(axis=0))
    return (
        f"<table><tr><th>reference \\ predicted</th>{head}<th>total</th></tr>"
        + "".join(rows)
        + f"<tr><th>total</th>{totals}<td>{int(matrix.sum()):,}</td></tr>"
        "</table>"
    )


def write_html(
    path: str,
    matrix: np.ndarray,
    names: list,
    score: dict,
    prediction: str,
    reference: str,
    notes: list,
) -> None:
    """Write a self-contained HTML report (figure embedded as a data URI), atomically."""
    from .plots import confusion_matrix_figure, figure_to_data_uri, scores_table_html

    figure = figure_to_data_uri(confusion_matrix_figure(matrix, names, "Confusion matrix"))
    escaped = [html.escape(n) for n in names]

    def number(key):
        value = score[key]
        return f"{value:.4f}" if math.isfinite(value) else "-"

    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Wetland U-Net accuracy assessment</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:.3em .6em;
text-align:right}}th{{background:#eee}}img{{max-width:100%}}</style></head><body>
<h1>Accuracy assessment</h1>
<p>Prediction: <code>{html.escape(str(prediction))}</code><br>
Reference: <code>{html.escape(str(reference))}</code><br>
Generated {html.escape(time.strftime("%Y-%m-%d %H:%M:%S"))}</p>
<table><tr><th>overall accuracy</th><td>{number("overall_accuracy")}</td></tr>
<tr><th>Cohen's kappa</th><td>{number("kappa")}</td></tr>
<tr><th>mean IoU</th><td>{number("mean_iou")}</td></tr>
<tr><th>mean F1</th><td>{number("mean_f1")}</td></tr>
<tr><th>pixels compared</th><td>{int(matrix.sum()):,}</td></tr></table>
<h2>Per class</h2>
{scores_table_html(score, escaped)}
<h2>Confusion matrix</h2>
<p>Rows: reference; columns: prediction.</p>
{_matrix_html(matrix, names)}
<img alt="confusion matrix" src="{figure}">
{"<h2>Notes</h2><ul>" + notes_html + "</ul>" if notes else ""}
</body></html>
"""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(page)


# --------------------------------------------------------------------------- entry point


def _grow(matrix: np.ndarray, size: int) -> np.ndarray:
    if matrix.shape[0] >= size:
        return matrix
    grown = np.zeros((size, size), dtype=np.int64)
    grown[: matrix.shape[0], : matrix.shape[0]] = matrix
    return grown


def accumulate(pred, ref_reader, feedback: Feedback, window_rows: int | None = None) -> tuple:
    """Stream over row windows and count (reference, prediction) pairs of ids >= 1.

    Args:
        pred: the prediction dataset.
        ref_reader: the reference on the prediction's grid (dataset or WarpedVRT).
        feedback: progress and cancel.
        window_rows: rows per window (default ``WINDOW_ROWS``).

    Returns:
        (matrix, max_pred_id, max_ref_id): the (K, K) counts over ids 1..K where K is
        the largest id in a labelled pair; the largest id anywhere in the prediction;
        the largest reference id over pixels labelled in both.
    """
    from rasterio.windows import Window

    window_rows = int(window_rows or WINDOW_ROWS)
    matrix = np.zeros((0, 0), dtype=np.int64)
    max_pred = max_ref = 0
    ref_nodata = ref_reader.nodata
    for row in range(0, pred.height, window_rows):
        feedback.check_canceled()
        window = Window(0, row, pred.width, min(window_rows, pred.height - row))
        p = class_ids(pred.read(1, window=window)[None], pred.nodata)
        r = class_ids(ref_reader.read(window=window), ref_nodata)
        max_pred = max(max_pred, int(p.max()) if p.size else 0)
        both = (p > 0) & (r > 0)
        if both.any():
            max_ref = max(max_ref, int(r[both].max()))
            matrix = _grow(matrix, max(int(p[both].max()), max_ref, matrix.shape[0]))
            matrix = metrics.confusion_matrix(r[both], p[both], matrix.shape[0], matrix)
        feedback.progress(min(1.0, (row + window.height) / pred.height) * 0.9)
    return matrix, max_pred, max_ref


def evaluate_map(
    prediction=None, reference=None, output_html=None, output_table=None, *, feedback=None, **params
) -> dict:
    """Compare a class map with a reference: confusion matrix, OA, kappa, per-class IoU/F1.

    Args:
        prediction, reference, output_html, output_table, **params: the parameters of
            ``schema.EVALUATE`` by keyword: ``prediction`` (class raster, ids 1..N; 0 /
            nodata = no prediction), ``reference`` (class ids, 0 / nodata = unlabelled,
            ignored; on any grid: realigned to the prediction's with nearest neighbour),
            ``output_html`` (self-contained report), ``output_table`` (CSV: confusion
            matrix, per-class metrics, overall), ``class_names`` ("a,b,c" or a list, when
            no model is given), ``model`` (its class names are used; no TensorFlow).
            A ``reference`` that is a point layer goes to ``accuracy.assess``
            (``reference_field``, ``stratified``, ``output_areas``).
        feedback: ``Feedback``.

    Returns:
        dict with ``overall_accuracy``, ``kappa``, ``mean_iou``, ``mean_f1``, per-class
        lists ``precision``, ``recall``, ``f1``, ``iou``, ``support``, ``class_names``,
        ``matrix`` (list of lists, rows = reference), ``pixels``, ``output_html``,
        ``output_table``.

    Raises:
        CoreError: rasters that do not overlap or share no labelled pixel, prediction
            ids beyond the class names, unwritable outputs.
    """
    feedback = feedback or Feedback()
    p = EVALUATE.check(
        dict(
            params,
            prediction=prediction,
            reference=reference,
            output_html=output_html,
            output_table=output_table,
        )
    )
    from .accuracy.points import is_vector

    if is_vector(p["reference"]):  # labelled points: good-practice estimates (core/accuracy)
        from .accuracy.assess import evaluate_points

        return evaluate_points(p, feedback)
    if p["output_areas"]:
        raise CoreError("OUTPUT_AREAS needs a REFERENCE of labelled sample points.")
    prediction, reference, model = p["prediction"], p["reference"], p["model"]
    output_html, output_table, class_names = p["output_html"], p["output_table"], p["class_names"]
    inputs = [prediction, reference, model]
    for key, path in (("OUTPUT_HTML", output_html), ("OUTPUT_TABLE", output_table)):
        if path:
            rasterlib.check_output_path(path, inputs, what=key)
    if (
        output_html
        and output_table
        and os.path.realpath(output_html) == os.path.realpath(output_table)
    ):
        raise CoreError("OUTPUT_HTML and OUTPUT_TABLE are the same file: give each its own path.")
    notes = []
    with (
        rasterlib.open_raster(prediction, "prediction") as pred,
        rasterlib.open_raster(reference, "reference") as ref,
    ):
        names = resolve_class_names(model, class_names, pred.tags())
        if pred.count != 1:
            raise CoreError(
                f"The prediction '{prediction}' has {pred.count} bands; choose the "
                "single-band class raster (OUTPUT of wetlandunet:predict), not the "
                "probabilities or the RGB map."
            )
        _check_overlap(pred, ref)
        if not rasterlib.same_grid(pred, ref):
            notes.append(
                "The reference was resampled (nearest neighbour) onto the prediction's grid."
            )
            feedback.info(notes[-1])
        with _reference_on_grid(pred, ref) as ref_reader:
            matrix, max_pred, max_ref = accumulate(pred, ref_reader, feedback)
    if matrix.sum() == 0:
        raise CoreError(
            "PREDICTION and REFERENCE share no labelled pixel (where they overlap, "
            "the reference is 0/nodata or the prediction is nodata). Check that the "
            "reference belongs to this scene and uses class ids 1..N."
        )
    if names is None:
        names = [f"class {k + 1}" for k in range(max(matrix.shape[0], max_pred))]
    n = len(names)
    if max_pred > n:
        raise CoreError(
            f"The prediction has class id {max_pred} but only {n} class names are "
            f"known ({', '.join(names)}). Give the MODEL that made the prediction, "
            "or CLASS_NAMES naming every class in id order."
        )
    if max_ref > n:
        extra = int(matrix[n:, :].sum())
        notes.append(
            f"{extra:,} reference pixels have class ids above {n} (no such class in "
            "the names) and were ignored."
        )
        feedback.warning(notes[-1])
    matrix = _grow(matrix, n)[:n, :n].copy()
    if matrix.sum() == 0:
        raise CoreError(
            "No reference pixel has a class id the prediction knows (1.."
            f"{n}); check that the reference uses the same class ids."
        )
    score = metrics.scores(matrix)
    if output_table:
        write_table(output_table, matrix, names, score)
    feedback.check_canceled()
    if output_html:
        write_html(output_html, matrix, names, score, prediction, reference, notes)
    feedback.progress(1.0)
    feedback.info(
        f"Overall accuracy {score['overall_accuracy']:.4f}, kappa "
        f"{score['kappa']:.4f}, mean IoU {score['mean_iou']:.4f} over "
        f"{int(matrix.sum()):,} pixels."
    )

    def clean(values):
        return [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]

    def clean_one(value):
        return None if not math.isfinite(value) else value

    return {
        "overall_accuracy": clean_one(score["overall_accuracy"]),
        "kappa": clean_one(score["kappa"]),
        "mean_iou": clean_one(score["mean_iou"]),
        "mean_f1": clean_one(score["mean_f1"]),
        "precision": clean(score["precision"]),
        "recall": clean(score["recall"]),
        "f1": clean(score["f1"]),
        "iou": clean(score["iou"]),
        "support": score["support"],
        "class_names": names,
        "matrix": matrix.tolist(),
        "pixels": int(matrix.sum()),
        "output_html": output_html,
        "output_table": output_table,
        "notes": notes,
    }
