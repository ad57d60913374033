"""The quality-vs-training-time plot reads bench_quality.py's JSON reports."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import plot_quality_vs_time


def _report(path, seconds, limit, epochs, unet, rf, rf_means):
    def held(scores):
        return {"held_out": {"overall_accuracy": scores[0], "mean_iou": scores[1]}}

    report = {
        "methods": {
            "unet": dict(
                held(unet),
                training_s=seconds,
                details={"parameters": {"TIME_LIMIT": limit}, "epochs_run": epochs},
            ),
            "rf": held(rf),
            "rf_means": held(rf_means),
        }
    }
    path.write_text(json.dumps(report))
    return str(path)


def test_runs_are_read_sorted_by_training_time_and_plotted(tmp_path):
    long_run = _report(
        tmp_path / "a.json", 2160.0, 36, 161, (0.95, 0.91), (0.92, 0.86), (0.94, 0.90)
    )
    short_run = _report(
        tmp_path / "b.json", 270.0, "4.5", 14, (0.93, 0.88), (0.93, 0.87), (0.95, 0.91)
    )
    runs = plot_quality_vs_time.load_runs([long_run, short_run])
    assert [run["path"] for run in runs] == [short_run, long_run]
    assert [run["minutes"] for run in runs] == [4.5, 36.0]  # 270 s and 2160 s
    assert [run["limit"] for run in runs] == [4.5, 36.0]
    assert [run["epochs"] for run in runs] == [14, 161]
    assert runs[0]["oa"] == 0.93 and runs[1]["miou"] == 0.91
    assert runs[1]["rf"] == (0.92, 0.86) and runs[0]["rf_means"] == (0.95, 0.91)

    output = tmp_path / "plot.png"
    assert plot_quality_vs_time.main([long_run, short_run, "--output", str(output)]) == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
