"""Core must import and run without QGIS (GPU servers have none)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BLOCK_QGIS = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "qgis" or name.startswith("qgis.") or name == "processing":
            raise ImportError("qgis is blocked in this test")
sys.meta_path.insert(0, Block())
import pkgutil, importlib
import wetland_unet_plugin.core as core
names = [m.name for m in pkgutil.iter_modules(core.__path__) if m.name != "__main__"]
for name in names:
    importlib.import_module("wetland_unet_plugin.core." + name)
print("imported", len(names), "modules;", "tensorflow loaded:", "tensorflow" in sys.modules)
"""


def test_core_imports_with_qgis_blocked():
    """Every core module imports with qgis unavailable, and none pulls in TensorFlow."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_QGIS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tensorflow loaded: False" in result.stdout
    count = int(result.stdout.split("imported ")[1].split()[0])
    assert count >= 8


def test_cli_help_runs_without_qgis():
    """The core CLI lists its jobs."""
    result = subprocess.run(
        [sys.executable, "-m", "wetland_unet_plugin.core", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for command in ("align", "clean", "train", "predict", "evaluate", "info", "worker"):
        assert command in result.stdout


def test_cli_runs_a_job_with_a_summary_line(tmp_path):
    """The CLI cleans a raster, prints a one-line summary and the result as JSON."""
    import json

    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    src = str(tmp_path / "in.tif")
    data = np.arange(100, dtype="float32").reshape(1, 10, 10)
    data[0, 3, 4] = np.nan
    data[0, 5, 5] = -1
    with rasterio.open(
        src,
        "w",
        driver="GTiff",
        width=10,
        height=10,
        count=1,
        dtype="float32",
        crs="EPSG:32633",
        transform=from_origin(0, 100, 10, 10),
    ) as ds:
        ds.write(data)
    out = str(tmp_path / "out.tif")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wetland_unet_plugin.core",
            "clean",
            "--input",
            src,
            "--output",
            out,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["invalid_count"] == 2
    assert "clean done in" in result.stderr
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "wetland_unet_plugin.core",
            "clean",
            "--input",
            str(tmp_path / "missing.tif"),
            "--output",
            out,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "does not exist" in bad.stderr
