"""The training report: one self-contained HTML file (figures embedded as data URIs)."""

from __future__ import annotations

import html
import math
import os

import numpy as np

from .atomic import atomic_output
from .plots import _pyplot, confusion_matrix_figure, figure_to_data_uri, scores_table_html
from .training.metadata import HISTORY_METRICS

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.swatch { display: inline-block; width: 1em; height: 1em; vertical-align: middle;
          border: 1px solid #555; margin-right: 0.4em; }
.note { color: #555; font-size: 0.9em; }
.warn { color: #a00; font-weight: bold; }
img { max-width: 100%; }
"""


def _esc(value) -> str:
    return html.escape(str(value))


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}" if math.isfinite(value) else "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v, digits) for v in value)
    return _esc(value)


def _as_float(values) -> list:
    return [float("nan") if v is None else float(v) for v in values]


def curves_figure(history: dict, keys=("loss", "accuracy", "miou")):
    """Loss, accuracy and mean IoU per epoch, training vs validation, side by side.

    Args:
        history: per-epoch lists (``loss``, ``val_loss``, ``accuracy``, ``val_accuracy``,
            ``miou``, ``val_miou``).
        keys: the metrics to plot, one panel each.

    Returns:
        A matplotlib figure.
    """
    plt = _pyplot()
    keys = [k for k in keys if history.get(k)]
    fig, axes = plt.subplots(
        1, max(1, len(keys)), figsize=(5.2 * max(1, len(keys)), 3.6), squeeze=False
    )
    for ax, key in zip(axes[0], keys):
        train = _as_float(history.get(key, []))
        epochs = np.arange(1, len(train) + 1)
        ax.plot(epochs, train, "o-", label="training", color="#1f78b4")
        if history.get("val_" + key):
            ax.plot(
                epochs,
                _as_float(history["val_" + key])[: len(epochs)],
                "s-",
                label="validation",
                color="#e6550d",
            )
        label = {"miou": "mean IoU"}.get(key, key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
        ax.legend()
    fig.tight_layout()
    return fig


def _class_table(metadata: dict) -> str:
    names = metadata.get("class_names", [])
    colors = metadata.get("class_colors", [])
    weights = (metadata.get("class_weights") or {}).get("values", [])
    freqs = (metadata.get("class_weights") or {}).get("frequencies", [])
    pixels = (metadata.get("data") or {}).get("pixels_per_class", [])
    rows = []
    for i, name in enumerate(names):
        color = colors[i] if i < len(colors) else "#ffffff"
        rows.append(
            f"<tr><td>{i + 1}</td><td><span class='swatch' style='background:{_esc(color)}'>"
            f"</span>{_esc(name)}</td><td>{_fmt(pixels[i] if i < len(pixels) else None)}</td>"
            f"<td>{_fmt(freqs[i] if i < len(freqs) else None, 3)}</td>"
            f"<td>{_fmt(weights[i] if i < len(weights) else None, 3)}</td></tr>"
        )
    return (
        "<table><tr><th>id</th><th>class</th><th>labelled pixels</th>"
        "<th>share in training patches</th><th>loss weight</th></tr>" + "".join(rows) + "</table>"
    )


def _dict_table(items: dict) -> str:
    rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in items.items())
    return f"<table>{rows}</table>"


def _data_table(data: dict, names: list) -> str:
    head = (
        "<tr><th>image</th><th>mask</th><th>size (px)</th><th>split</th>"
        + "".join(f"<th>{_esc(n)}</th>" for n in names)
        + "<th>unlabelled</th><th>invalid (sampled)</th><th>read</th></tr>"
    )
    rows = []
    for item in data.get("images", []):
        counts = item.get("pixels_per_class", [])
        rows.append(
            f"<tr><td>{_esc(os.path.basename(item['image']))}</td>"
            f"<td>{_esc(os.path.basename(item['mask']))}</td>"
            f"<td>{item['width']} x {item['height']}</td>"
            f"<td>{_esc(item.get('split', ''))}</td>"
            + "".join(f"<td>{_fmt(c)}</td>" for c in counts)
            + f"<td>{_fmt(item.get('unlabelled_fraction', 0) * 100, 3)} %</td>"
            f"<td>{_fmt((item.get('invalid_fraction_sampled') or 0) * 100, 3)} %</td>"
            f"<td>{'in memory' if item.get('cached') else 'windows'}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _history_table(history: dict) -> str:
    keys = [k for k in HISTORY_METRICS + ("learning_rate", "epoch_time_s") if history.get(k)]
    if not keys:
        return ""
    n = max(len(history[k]) for k in keys)
    head = "<tr><th>epoch</th>" + "".join(f"<th>{_esc(k)}</th>" for k in keys) + "</tr>"
    rows = "".join(
        "<tr><td>%d</td>%s</tr>"
        % (
            i + 1,
            "".join(
                f"<td>{_fmt(history[k][i] if i < len(history[k]) else None)}</td>" for k in keys
            ),
        )
        for i in range(n)
    )
    return f"<table>{head}{rows}</table>"


def _scores_for_table(score: dict) -> dict:
    """Scores with None (stored for NaN) turned back into NaN for the table."""
    out = dict(score)
    for key in ("precision", "recall", "f1", "iou"):
        out[key] = _as_float(score.get(key, []))
    out["support"] = [int(v or 0) for v in score.get("support", [])]
    return out


#: Classes whose validation recall is below this get a warning at the top of the report.
LOW_RECALL = 0.5


def _class_warnings(score: dict, names: list) -> str:
    """A warning naming the classes the U-Net misses (recall below ``LOW_RECALL``)."""
    low = [
        f"{_esc(name)} (recall {r:.2f}, precision {_fmt(p, 2)})"
        for name, r, p in zip(names, _as_float(score.get("recall", [])), score.get("precision", []))
        if math.isfinite(r) and r < LOW_RECALL
    ]
    if not low:
        return ""
    return (
        f"<p class='warn'>Warning: recall below {LOW_RECALL:g} on the validation pixels for "
        + "; ".join(low)
        + ". Most of these classes' pixels are mapped as other classes: check their labels, "
        "give them more labelled pixels or a larger CLASS_WEIGHTS, or train longer.</p>"
    )


def _baseline_html(baseline: dict, names: list) -> str:
    """The U-Net and the random forest side by side on the same validation pixels."""
    unet, forest = baseline.get("unet") or {}, baseline.get("random_forest") or {}
    rows = [("overall accuracy", "overall_accuracy"), ("mean IoU", "mean_iou")]
    cells = [
        f"<tr><td>{label}</td><td>{_fmt(unet.get(key), 3)}</td>"
        f"<td>{_fmt(forest.get(key), 3)}</td></tr>"
        for label, key in rows
    ]
    for i, name in enumerate(names):
        pair = [(d.get("iou") or [None] * len(names))[i] for d in (unet, forest)]
        cells.append(
            f"<tr><td>IoU {_esc(name)}</td><td>{_fmt(pair[0], 3)}</td>"
            f"<td>{_fmt(pair[1], 3)}</td></tr>"
        )
    return (
        f"<h2>Baseline: random forest</h2><p><b>{_esc(baseline.get('summary', ''))}</b></p>"
        "<table><tr><th>validation score</th><th>U-Net</th><th>random forest</th></tr>"
        + "".join(cells)
        + "</table><p class='note'>"
        + _esc(baseline.get("method", ""))
        + f", trained on {_fmt(baseline.get('train_pixels'))} labelled pixels of the "
        f"training patches in {_fmt(baseline.get('time_s'), 3)} s; both scored on the "
        f"same {_fmt(baseline.get('val_pixels'))} labelled validation pixels.</p>"
    )


def training_report_html(
    metadata: dict, history: dict | None = None, title: str | None = None
) -> str:
    """Build the HTML of a training report.

    Args:
        metadata: the model's metadata (as ``train_model`` writes it).
        history: per-epoch lists; defaults to ``metadata["history"]``.
        title: page title.

    Returns:
        A complete HTML document with embedded PNG figures.
    """
    history = history if history is not None else metadata.get("history", {})
    names = metadata.get("class_names", [])
    validation = metadata.get("validation") or {}
    score = validation.get("scores") or {}
    weights = metadata.get("class_weights") or {}
    training = metadata.get("training") or {}
    title = title or "Wetland U-Net training report"
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{_esc(title)}</h1>"
    ]
    summary = {
        "created": metadata.get("created"),
        "classes": ", ".join(names),
        "bands (1-based)": metadata.get("bands"),
        "epochs run": metadata.get("epochs_run"),
        "best epoch (weights kept)": metadata.get("best_epoch"),
        "kept epoch chosen by": metadata.get("best_epoch_by", "lowest validation loss"),
        "best validation mean IoU (kept epoch)": metadata.get("best_val_miou"),
        "validation loss (kept epoch)": metadata.get("best_val_loss"),
        "validation overall accuracy": score.get("overall_accuracy"),
        "validation kappa": score.get("kappa"),
        "validation mean IoU": score.get("mean_iou"),
        "validation mean F1": score.get("mean_f1"),
        "stopped early": metadata.get("stopped_early"),
        "canceled": metadata.get("canceled"),
        "training time (s)": metadata.get("training_time_s"),
        "parameters": metadata.get("n_parameters"),
    }
    sizing = metadata.get("model_size") or {}
    if sizing:
        summary["model size"] = f"{sizing.get('used')} ({sizing.get('reason')})"
    sampling = metadata.get("patch_sampling") or {}
    if sampling.get("description"):
        summary["training patches"] = sampling["description"]
    if metadata.get("baseline"):
        summary["baseline"] = metadata["baseline"].get("summary")
    parts.append("<h2>Summary</h2>" + _dict_table(summary))
    if score.get("recall"):
        parts.append("<h2>Per-class recall and precision</h2>" + _class_warnings(score, names))
        parts.append(scores_table_html(_scores_for_table(score), names))
        parts.append(
            "<p class='note'>Recall: share of a class's validation pixels mapped as that "
            "class. Precision: share of the pixels mapped as a class that are that class.</p>"
        )
    if metadata.get("baseline"):
        parts.append(_baseline_html(metadata["baseline"], names))
    if history.get("loss"):
        parts.append("<h2>Loss and accuracy per epoch</h2>")
        parts.append(
            f"<img alt='training curves' src='{figure_to_data_uri(curves_figure(history))}'>"
        )
        parts.append(
            "<p class='note'>Loss: weighted cross-entropy over labelled pixels "
            "(unlabelled and invalid pixels have weight 0). Accuracy: share of "
            "labelled pixels classified correctly.</p>"
        )
        parts.append(_history_table(history))
    if validation.get("confusion_matrix"):
        matrix = np.asarray(validation["confusion_matrix"])
        parts.append(
            "<h2>Validation</h2><p class='note'>"
            + _esc(validation.get("description", "validation patches"))
            + f"; "
            f"{_fmt(score.get('pixels'))} labelled pixels in "
            f"{_fmt(validation.get('patches'))} patches.</p>"
        )
        figure = confusion_matrix_figure(matrix, names, "Validation confusion matrix")
        parts.append(f"<img alt='confusion matrix' src='{figure_to_data_uri(figure)}'>")
    parts.append("<h2>Classes and loss weights</h2>" + _class_table(metadata))
    parts.append(
        f"<p class='note'>Class weights ({_esc(weights.get('method', ''))}): "
        f"{_esc(weights.get('formula', ''))}.</p>"
    )
    data = metadata.get("data") or {}
    if data:
        parts.append("<h2>Data</h2>" + _data_table(data, names))
        parts.append(
            f"<p class='note'>{_fmt(data.get('labelled_pixels'))} labelled pixels; "
            f"{_fmt((data.get('unlabelled_fraction') or 0) * 100, 3)} % of all "
            "pixels unlabelled. Validation patches come from the held-out strip of "
            "each image (the last VAL_FRACTION of rows, or of columns), separated "
            "from the training part by half a patch.</p>"
        )
    params = {
        "patch size": metadata.get("patch_size"),
        "filters": metadata.get("filters"),
        "depth": metadata.get("depth"),
        "spectral skip": metadata.get("spectral_skip", False),
        "activation": metadata.get("activation"),
        "loss": metadata.get("loss"),
        "pixel size": metadata.get("pixel_size"),
    }
    params.update({k: v for k, v in training.items() if k not in ("images", "masks")})
    parts.append("<h2>Parameters</h2>" + _dict_table(params))
    norm = metadata.get("normalization") or {}
    if norm:
        parts.append(
            "<h2>Normalisation</h2>"
            + _dict_table(
                {
                    "method": norm.get("method"),
                    "percentiles": norm.get("percentiles"),
                    "low (0)": norm.get("low"),
                    "high (1)": norm.get("high"),
                }
            )
        )
    if metadata.get("versions"):
        parts.append("<h2>Software</h2>" + _dict_table(metadata["versions"]))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_training_report(
    path: str, metadata: dict, history: dict | None = None, title: str | None = None
) -> str:
    """Write the training report atomically.

    Args:
        path: HTML file to write.
        metadata: the model's metadata.
        history: per-epoch lists; defaults to ``metadata["history"]``.
        title: page title.

    Returns:
        ``path``.
    """
    text = training_report_html(metadata, history, title)
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
    return path
