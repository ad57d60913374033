"""wetlandunet:setupworker - build or repair the TensorFlow worker's environment, record it.

Runs in QGIS's process (pip runs in a subprocess; TensorFlow is only imported by
the new environment's own Python during its check).
"""

import os

from qgis.core import QgsApplication

from ..core.schema import SETUP_WORKER
from ..core.setup_env import default_base_python
from .base import WetlandAlgorithm
from .settings import record_worker_python
from .tensorflow_check import forget
from .worker_client import shutdown_client


def profile_folder() -> str:
    """The default environment folder: inside the active QGIS profile."""
    return os.path.join(QgsApplication.qgisSettingsDirPath(), "wetland_unet", "worker")


class SetupWorkerAlgorithm(WetlandAlgorithm):
    """Create (or repair) the worker environment with pip and record it as the worker Python."""

    JOB = SETUP_WORKER

    def prepare(self, values, parameters, context, feedback):
        values["folder"] = values.get("folder") or profile_folder()
        if not values.get("python"):
            values["python"] = default_base_python()
            feedback.pushInfo(f"Base Python (the one QGIS runs on): {values['python']}")
        # The running worker may live in the folder being rebuilt: stop it first.
        shutdown_client()
        return values

    def results(self, outputs, result, values, context, feedback):
        record_worker_python(result["worker_python"])
        forget()
        shutdown_client()
        feedback.pushInfo(
            f"Recorded {result['worker_python']} as the worker Python (TensorFlow "
            f"{result['tensorflow']}; {result['devices']}). Train and predict use it from now on."
        )
        return outputs
