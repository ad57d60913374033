"""Outputs of a point-based assessment: the area table (CSV), the error matrix (CSV) and
the HTML report with a figure of mapped vs estimated areas and their 95 % intervals.
Every file is written atomically (complete or absent)."""

from __future__ import annotations

import csv
import html
import time

import numpy as np

from ..atomic import atomic_output

#: The columns of OUTPUT_AREAS (design.md).
AREA_COLUMNS = (
    "class_id",
    "class_name",
    "mapped_ha",
    "estimated_ha",
    "estimated_ha_ci95",
    "users_accuracy",
    "users_accuracy_ci95",
    "producers_accuracy",
    "producers_accuracy_ci95",
)


def _num(value, digits=6) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def area_rows(names, est) -> list:
    """One dict per class with ``AREA_COLUMNS`` (None where not estimable)."""
    return [
        {
            "class_id": k + 1,
            "class_name": name,
            "mapped_ha": est["mapped_area"][k],
            "estimated_ha": est["estimated_area"][k],
            "estimated_ha_ci95": est["estimated_area_ci95"][k],
            "users_accuracy": est["users_accuracy"][k],
            "users_accuracy_ci95": est["users_accuracy_ci95"][k],
            "producers_accuracy": est["producers_accuracy"][k],
            "producers_accuracy_ci95": est["producers_accuracy_ci95"][k],
        }
        for k, name in enumerate(names)
    ]


def write_areas(path, rows) -> None:
    """OUTPUT_AREAS: ``AREA_COLUMNS``, one row per class (empty cells: not estimable)."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(AREA_COLUMNS)
        for row in rows:
            writer.writerow(
                [row["class_id"], row["class_name"]] + [_num(row[c], 9) for c in AREA_COLUMNS[2:]]
            )


def write_error_matrix(path, names, counts, est) -> None:
    """OUTPUT_TABLE of a stratified sample: the error matrix in area proportions
    (rows = map, columns = reference), then the sample counts, then overall accuracy."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["map \\ reference (area proportions)", *names, "total"])
        for k, name in enumerate(names):
            row = est["proportions"][k]
            writer.writerow([name, *[_num(v, 9) for v in row], _num(row.sum(), 9)])
        writer.writerow(
            ["total", *[_num(v, 9) for v in est["proportions"].sum(axis=0)], _num(1.0, 9)]
        )
        writer.writerow([])
        writer.writerow(["map \\ reference (sample points)", *names, "total"])
        for k, name in enumerate(names):
            writer.writerow([name, *[int(v) for v in counts[k]], int(counts[k].sum())])
        writer.writerow([])
        writer.writerow(["metric", "value", "ci95"])
        writer.writerow(
            ["overall_accuracy", _num(est["overall_accuracy"]), _num(est["overall_accuracy_ci95"])]
        )


def area_figure(rows):
    """Bar chart: mapped area and estimated area with its 95 % interval, per class."""
    from ..plots import _pyplot

    plt = _pyplot()
    names = [r["class_name"] for r in rows]
    x = np.arange(len(rows))
    mapped = [r["mapped_ha"] for r in rows]
    estimated = [r["estimated_ha"] if r["estimated_ha"] is not None else np.nan for r in rows]
    ci = [r["estimated_ha_ci95"] if r["estimated_ha_ci95"] is not None else 0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 2), 3.6))
    ax.bar(x - 0.2, mapped, 0.4, label="mapped (pixel count)", color="#9e9e9e")
    ax.bar(x + 0.2, estimated, 0.4, yerr=ci, capsize=4, label="estimated, 95 % CI", color="#1f77b4")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("hectares")
    ax.set_title("Mapped and estimated class areas")
    ax.legend()
    fig.tight_layout()
    return fig


def _pm(value, ci, digits=3) -> str:
    if value is None:
        return "&ndash;"
    text = f"{value:,.{digits}f}"
    return text + (f" &plusmn; {ci:,.{digits}f}" if ci is not None else "")


def write_html(path, names, counts, est, rows, prediction, reference, notes) -> None:
    """A self-contained HTML report of a stratified point assessment."""
    from ..plots import figure_to_data_uri

    figure = figure_to_data_uri(area_figure(rows))
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    matrix = "".join(
        f"<tr><th>{html.escape(n)}</th>"
        + "".join(f"<td>{v:.4f}</td>" for v in est["proportions"][k])
        + f"<td>{int(counts[k].sum())}</td></tr>"
        for k, n in enumerate(names)
    )
    table = "".join(
        f"<tr><th>{html.escape(r['class_name'])}</th><td>{r['mapped_ha']:,.2f}</td>"
        f"<td>{_pm(r['estimated_ha'], r['estimated_ha_ci95'], 2)}</td>"
        f"<td>{_pm(r['users_accuracy'], r['users_accuracy_ci95'])}</td>"
        f"<td>{_pm(r['producers_accuracy'], r['producers_accuracy_ci95'])}</td></tr>"
        for r in rows
    )
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Wetland U-Net area-adjusted accuracy</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:.3em .6em;
text-align:right}}th{{background:#eee}}img{{max-width:100%}}</style></head><body>
<h1>Accuracy and area estimates (stratified sample)</h1>
<p>Map: <code>{html.escape(str(prediction))}</code><br>
Sample: <code>{html.escape(str(reference))}</code><br>
Generated {html.escape(time.strftime("%Y-%m-%d %H:%M:%S"))}</p>
<p>Stratified estimators of Olofsson et al. (2014), Remote Sensing of Environment 148:
42-57; intervals are 95 % (&plusmn; 1.96 standard errors).</p>
<table><tr><th>overall accuracy</th>
<td>{_pm(est["overall_accuracy"], est["overall_accuracy_ci95"], 4)}</td></tr>
<tr><th>sample points used</th><td>{int(counts.sum()):,}</td></tr></table>
<h2>Areas and accuracies per class</h2>
<table><tr><th>class</th><th>mapped ha</th><th>estimated ha &plusmn; 95 % CI</th>
<th>user's accuracy</th><th>producer's accuracy</th></tr>{table}</table>
<img alt="mapped and estimated areas" src="{figure}">
<h2>Error matrix in area proportions</h2>
<p>Rows: map class (strata); columns: reference. Last column: sample points.</p>
<table><tr><th>map \\ reference</th>{head}<th>points</th></tr>{matrix}</table>
{"<h2>Notes</h2><ul>" + notes_html + "</ul>" if notes else ""}
</body></html>
"""
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(page)
