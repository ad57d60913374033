"""wetlandunet:evaluate with points: accuracy and class areas from a labelled sample.

With a stratified sample of the map (points carrying ``map_class``, or STRATIFIED on)
the estimates are the stratified ones of Olofsson et al. (2014) (``estimators``), with
the strata weights from the map's own pixel counts over its valid area. Without, the
points are compared as they are (a confusion matrix of point counts).
"""

from __future__ import annotations

import os

import numpy as np

from .. import metrics
from .. import raster as rasterlib
from ..feedback import CoreError
from .estimators import stratified_estimates
from .mapinfo import check_single_band, class_names_for, count_classes, pixel_area_ha
from .points import read_sample
from .report import area_rows, write_areas, write_error_matrix, write_html


def _check_outputs(p) -> None:
    paths = {k: p[k] for k in ("output_html", "output_table", "output_areas") if p.get(k)}
    for key, path in paths.items():
        rasterlib.check_output_path(
            path, [p["prediction"], str(p["reference"]).split("|")[0]], key.upper()
        )
    real = [os.path.realpath(v) for v in paths.values()]
    if len(set(real)) != len(real):
        raise CoreError("OUTPUT_HTML, OUTPUT_TABLE and OUTPUT_AREAS must be different files.")


def _finite(value):
    return None if value is None or not np.isfinite(value) else float(value)


def evaluate_points(p: dict, feedback) -> dict:
    """Assess a class map with labelled points (``p``: evaluate's checked parameters).

    Returns:
        evaluate's result dict (``overall_accuracy``, ``kappa``, ``mean_iou``, ...) plus,
        for a stratified sample, ``areas`` (one dict per class with the OUTPUT_AREAS
        columns), ``overall_accuracy_ci95``, ``skipped`` and ``output_areas``.

    Raises:
        CoreError: before any output is written (see ``points.read_sample``).
    """
    _check_outputs(p)
    notes = []
    with rasterlib.open_raster(p["prediction"], "prediction") as dataset:
        check_single_band(dataset, "prediction")
        names = class_names_for(dataset, p["model"], p["class_names"])
        pixels = count_classes(dataset, len(names) if names else None, feedback, 0.6)
        names = names or [f"class {k + 1}" for k in range(len(pixels))]
        sample = read_sample(p["reference"], p["reference_field"], dataset, names, feedback)
        area = pixel_area_ha(dataset)
    stratified = bool(p["stratified"]) or sample.has_strata
    for reason, count in sample.skipped.items():
        if count:
            notes.append(f"{count:,} of {sample.total:,} points skipped: {reason}.")
            feedback.warning(notes[-1])
    if sample.ref_ids.size == 0:
        raise CoreError(
            f"None of the {sample.total:,} points can be used (outside the map, on nodata or "
            "without a reference label). Label the points in REFERENCE_FIELD and check "
            "that they belong to this map."
        )
    k = len(names)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (sample.map_ids - 1, sample.ref_ids - 1), 1)
    if not stratified:
        if p["output_areas"]:
            raise CoreError(
                "OUTPUT_AREAS needs a stratified sample of the map: points carrying map_class "
                "(wetlandunet:samplepoints) or STRATIFIED on."
            )
        return _unstratified(p, names, counts, notes, feedback)
    if area is None:
        raise CoreError(
            "The map's CRS is not projected in metres (or has none), so areas in hectares "
            "cannot be computed: reproject the map (Raster > Projections > Warp) first."
        )
    for i in range(k):
        if pixels[i] > 0 and counts[i].sum() < 2:
            notes.append(
                f"{names[i]}: {int(counts[i].sum())} labelled point(s) in its stratum; at "
                "least 2 are needed, so its user's and producer's accuracy and its area "
                f"cannot be estimated; its {pixels[i] * area:,.2f} mapped ha are left out of "
                "the other classes' estimates. Label more points of this class."
            )
            feedback.warning(notes[-1])
    est = stratified_estimates(counts, pixels, area)
    rows = area_rows(names, est)
    score = metrics.scores(est["proportions"].T)
    feedback.check_canceled()
    if p["output_areas"]:
        write_areas(p["output_areas"], rows)
    if p["output_table"]:
        write_error_matrix(p["output_table"], names, counts, est)
    if p["output_html"]:
        write_html(
            p["output_html"], names, counts, est, rows, p["prediction"], p["reference"], notes
        )
    feedback.progress(1.0)
    feedback.info(
        f"Overall accuracy {est['overall_accuracy']:.4f} +/- "
        f"{est['overall_accuracy_ci95'] or float('nan'):.4f} (95 %) from "
        f"{int(counts.sum()):,} points."
    )
    for row in rows:
        if row["estimated_ha"] is not None:
            feedback.info(
                f"  {row['class_name']}: mapped {row['mapped_ha']:,.2f} ha, estimated "
                f"{row['estimated_ha']:,.2f} +/- {row['estimated_ha_ci95'] or 0:,.2f} ha"
            )
    return {
        "overall_accuracy": est["overall_accuracy"],
        "overall_accuracy_ci95": est["overall_accuracy_ci95"],
        "kappa": _finite(score["kappa"]),
        "mean_iou": _finite(score["mean_iou"]),
        "class_names": names,
        "areas": rows,
        "matrix": counts.tolist(),
        "proportions": est["proportions"].tolist(),
        "points": int(counts.sum()),
        "skipped": sample.skipped,
        "stratified": True,
        "output_html": p["output_html"],
        "output_table": p["output_table"],
        "output_areas": p["output_areas"],
        "notes": notes,
    }


def _unstratified(p, names, counts, notes, feedback) -> dict:
    """Points that are not a stratified sample: scores of the point counts."""
    from ..evaluate import write_html as raster_html
    from ..evaluate import write_table

    matrix = counts.T  # rows = reference, as in raster evaluation
    score = metrics.scores(matrix)
    notes.append(
        "The points are not a stratified sample of the map (no map_class field, STRATIFIED "
        "off): accuracies are those of the points as they are, without area weighting."
    )
    if p["output_table"]:
        write_table(p["output_table"], matrix, names, score)
    if p["output_html"]:
        raster_html(p["output_html"], matrix, names, score, p["prediction"], p["reference"], notes)
    feedback.progress(1.0)
    return {
        "overall_accuracy": _finite(score["overall_accuracy"]),
        "kappa": _finite(score["kappa"]),
        "mean_iou": _finite(score["mean_iou"]),
        "class_names": names,
        "matrix": matrix.tolist(),
        "points": int(counts.sum()),
        "stratified": False,
        "output_html": p["output_html"],
        "output_table": p["output_table"],
        "notes": notes,
    }
