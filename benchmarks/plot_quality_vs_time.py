"""Plot held-out quality against training time from several ``bench_quality.py`` runs.

Each run is one ``quality.json`` written by ``bench_quality.py`` (for instance
``--set TIME_LIMIT=18 --output bench_output/quality18``). The U-Net's held-out
overall accuracy and mean IoU are drawn against the run's training job time
(minutes, log scale), beside the random forests of the same runs (they do not
depend on the time limit: their mean over the runs is drawn), the issue's
target and the 10-minute budget. Nothing is trained here.

    python benchmarks/plot_quality_vs_time.py benchmarks/results/bench_quality_time_limit_*.json \
        --output docs/images/quality_vs_training_time.png
"""

from __future__ import annotations

import argparse
import json
import sys

TARGET_OA, TARGET_MIOU, BUDGET_MIN = 0.95, 0.90, 10.0


def load_runs(paths: list) -> list:
    """One dict per run: minutes, epochs, U-Net and forest scores; sorted by minutes.

    Args:
        paths: quality.json files of bench_quality.py.

    Returns:
        A list of dicts with ``minutes`` (training job), ``limit`` (TIME_LIMIT),
        ``epochs``, ``oa``, ``miou`` and ``rf`` / ``rf_means`` (OA, mIoU) pairs.
    """
    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
        methods = report["methods"]
        unet = methods["unet"]
        details = unet["details"]

        def scores(method, methods=methods):
            held = methods[method]["held_out"]
            return held["overall_accuracy"], held["mean_iou"]

        oa, miou = scores("unet")
        runs.append(
            {
                "path": path,
                "minutes": unet["training_s"] / 60.0,
                "limit": float(details["parameters"]["TIME_LIMIT"]),
                "epochs": details["epochs_run"],
                "oa": oa,
                "miou": miou,
                "rf": scores("rf"),
                "rf_means": scores("rf_means"),
            }
        )
    return sorted(runs, key=lambda run: run["minutes"])


def plot(runs: list, output: str) -> None:
    """Write the figure (PNG) to ``output``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [run["minutes"] for run in runs]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, index, name, target in (
        (axes[0], 0, "overall accuracy", TARGET_OA),
        (axes[1], 1, "mean IoU", TARGET_MIOU),
    ):
        key = ("oa", "miou")[index]
        values = [run[key] for run in runs]
        ax.plot(minutes, values, "o-", color="tab:blue", label="U-Net (TTA 8)")
        for run, value in zip(runs, values):
            ax.annotate(
                f"{value:.3f}\n{run['epochs']} ep.",
                (run["minutes"], value),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                fontsize=8,
            )
        for method, colour, label in (
            ("rf_means", "tab:green", "RF + 7x7 means"),
            ("rf", "tab:orange", "RF per pixel"),
        ):
            level = sum(run[method][index] for run in runs) / len(runs)
            ax.axhline(level, color=colour, linestyle="--", label=f"{label} ({level:.3f})")
        ax.axhline(target, color="tab:red", linestyle=":", label=f"target ({target:.2f})")
        ax.axvspan(
            min(minutes) / 1.5,
            BUDGET_MIN,
            color="0.9",
            zorder=0,
            label=f"within {BUDGET_MIN:g} min",
        )
        ax.set_xscale("log", base=2)
        ax.set_xticks(minutes, [f"{m:.1f}" for m in minutes])
        ax.set_xlim(min(minutes) / 1.5, max(minutes) * 1.5)
        ax.set_xlabel("training job, minutes (2-CPU VM)")
        ax.set_ylabel(f"held-out {name}")
        low = min(values + [run["rf"][index] for run in runs])
        ax.set_ylim(low - 0.01, max(values + [target]) + 0.012)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle("Aberystwyth Sentinel-2, held-out tiles 4, 6, 9, 15: quality vs training time")
    fig.savefig(output, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="quality.json files of bench_quality.py")
    parser.add_argument("--output", default="bench_output/quality_vs_training_time.png")
    args = parser.parse_args(argv)
    runs = load_runs(args.reports)
    print("| TIME_LIMIT | training job, min | epochs | U-Net OA | U-Net mIoU |")
    print("|---:|---:|---:|---:|---:|")
    for run in runs:
        print(
            f"| {run['limit']:g} | {run['minutes']:.1f} | {run['epochs']} | "
            f"{run['oa']:.3f} | {run['miou']:.3f} |"
        )
    plot(runs, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
