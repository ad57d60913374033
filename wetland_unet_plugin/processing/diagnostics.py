"""wetlandunet:diagnostics - what the worker is and can do, as a report for bug reports.

Gathers QGIS's side here (versions, settings, disk space) and the worker's side
through the worker client (``diagnose``: versions, devices, a timed smoke test);
``core.diagnostics.render_report`` writes it. TensorFlow is never imported here.
"""

import configparser
import os
import platform
import shutil
import tempfile

from qgis.core import Qgis, QgsProcessingException

from ..core.diagnostics import render_report
from ..core.feedback import CoreError
from ..core.schema import DIAGNOSTICS
from .base import WetlandAlgorithm
from .settings import worker_python_source
from .worker_client import FIX_HINT, PACKAGE_DIR, WorkerClient


def plugin_version() -> str:
    """The plugin's version from metadata.txt (installed plugin or source checkout)."""
    parser = configparser.ConfigParser()
    for folder in (PACKAGE_DIR, os.path.dirname(PACKAGE_DIR)):
        if parser.read(os.path.join(folder, "metadata.txt")):
            return parser["general"].get("version", "unknown")
    return "unknown"


def _module_version(name: str, attribute: str = "__version__") -> str:
    try:
        module = __import__(name, fromlist=["_"])
        return str(getattr(module, attribute))
    except Exception as err:  # a missing module is a fact for the report
        return f"not available ({type(err).__name__})"


def qgis_facts() -> dict:
    """QGIS's side: versions of QGIS, the plugin and QGIS's Python libraries."""
    return {
        "QGIS": Qgis.version(),
        "plugin": plugin_version(),
        "QGIS's Python": platform.python_version(),
        "platform": platform.platform(),
        "numpy in QGIS": _module_version("numpy"),
        "GDAL in QGIS": _module_version("osgeo.gdal", "__version__"),
        "rasterio in QGIS": _module_version("rasterio"),
        "TensorFlow in QGIS": "never loaded (it runs in the worker process)",
    }


def free_space(folders: dict) -> dict:
    """label -> free space text of each folder (its nearest existing parent)."""
    out = {}
    for label, folder in folders.items():
        path = folder
        while path and not os.path.isdir(path):
            path = os.path.dirname(path)
        try:
            out[label] = f"{shutil.disk_usage(path).free / 1e9:.1f} GB free in {folder}"
        except OSError as err:
            out[label] = f"unknown ({err})"
    return out


class DiagnosticsAlgorithm(WetlandAlgorithm):
    """Check the worker (a fresh one, so the report shows what a new job would find)."""

    JOB = DIAGNOSTICS

    def processAlgorithm(self, parameters, context, feedback):
        destination = self.parameterAsFileOutput(parameters, "OUTPUT_REPORT", context)
        if not destination:
            raise QgsProcessingException("OUTPUT_REPORT: give a .html or .txt file.")
        python, source = worker_python_source()
        report = {
            "qgis": qgis_facts(),
            "worker_python": python,
            "worker_python_source": source,
            "disk": free_space(
                {
                    "temporary folder": tempfile.gettempdir(),
                    "output folder": os.path.dirname(os.path.abspath(destination)),
                }
            ),
            "problems": [],
        }
        feedback.pushInfo(f"Worker Python: {python} ({source})")
        feedback.pushInfo("Starting a worker: versions, devices, a tiny model's train step...")
        client = WorkerClient(python)
        try:
            report["worker"] = client.run("diagnose", {})
        except CoreError as err:
            report["worker"] = None
            report["problems"].append(
                f"The worker does not run TensorFlow: {str(err).strip()} {FIX_HINT}"
            )
        finally:
            client.stop()
        worker = report["worker"] or {}
        if worker.get("gpu_reason"):
            report["problems"].append(worker["gpu_reason"])
        if (worker.get("smoke") or {}).get("error"):
            report["problems"].append(
                f"The smoke test failed in the worker: {worker['smoke']['error']}. Run "
                "'Install or repair the TensorFlow worker' (wetlandunet:setupworker)."
            )
        render_report(report, destination)
        for problem in report["problems"]:
            feedback.pushWarning(problem)
        if worker:
            feedback.pushInfo(f"TensorFlow {worker.get('tensorflow')} on {worker.get('device')}")
        devices = ", ".join(f"{d['type']}: {d['name']}" for d in worker.get("devices", []))
        return {
            "OUTPUT_REPORT": destination,
            "WORKER_OK": bool(worker) and not report["problems"],
            "TENSORFLOW": worker.get("tensorflow", ""),
            "DEVICES": devices,
        }
