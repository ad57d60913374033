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
    result = subprocess.run([sys.executable, "-c", BLOCK_QGIS], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tensorflow loaded: False" in result.stdout
    count = int(result.stdout.split("imported ")[1].split()[0])
    assert count >= 8


def test_cli_help_runs_without_qgis():
    """The core CLI lists its jobs."""
    result = subprocess.run([sys.executable, "-m", "wetland_unet_plugin.core", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("align", "clean", "train", "predict", "evaluate", "info", "worker"):
        assert command in result.stdout
