"""Figures for reports (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import base64
import io

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figure_to_data_uri(fig) -> str:
    """Render a matplotlib figure as a PNG data URI for a self-contained HTML report."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def confusion_matrix_figure(matrix: np.ndarray, class_names: list[str], title: str = ""):
    """Return a figure of a confusion matrix, row-normalised colours, counts annotated.

    Args:
        matrix: (N, N) counts, rows = reference, columns = prediction.
        class_names: N names.
        title: figure title.
    """
    plt = _pyplot()
    m = np.asarray(matrix, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.nan_to_num(m / m.sum(axis=1, keepdims=True))
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.1 * n + 2))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=30, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{int(m[i, j]):,}\n{share[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if share[i, j] > 0.5 else "black",
            )
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of reference class")
    if title:
        ax.set_title(title)
    return fig


def scores_table_html(score: dict, class_names: list[str]) -> str:
    """Per-class precision/recall/F1/IoU as an HTML table."""
    rows = []
    for i, name in enumerate(class_names):
        cells = "".join(
            f"<td>{score[k][i]:.3f}</td>" if np.isfinite(score[k][i]) else "<td>-</td>"
            for k in ("precision", "recall", "f1", "iou")
        )
        rows.append(f"<tr><td>{name}</td>{cells}<td>{score['support'][i]:,}</td></tr>")
    return (
        "<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>"
        "<th>IoU</th><th>reference pixels</th></tr>" + "".join(rows) + "</table>"
    )
