"""The jobs the worker and the CLI run, by name: one table, imported lazily.

Each job is a core function taking keyword parameters and ``feedback`` and
returning a JSON-serialisable dict.
"""

from __future__ import annotations

import importlib
import platform

from .feedback import CoreError

#: job name -> (module, function)
JOBS = {
    "align": ("align", "align_pair"),
    "clean": ("clean", "clean_invalid"),
    "train": ("train", "train_model"),
    "predict": ("predict", "predict_scene"),
    "evaluate": ("evaluate", "evaluate_map"),
}


def environment_info() -> dict:
    """Import TensorFlow and report versions: the worker's health check."""
    import tensorflow as tf  # first: the module whose absence the user must hear about
    import keras
    import numpy

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def get_job(name: str):
    """Return the core function of a job.

    Raises:
        CoreError: for an unknown job name.
    """
    if name == "ping":
        return lambda feedback=None: environment_info()
    try:
        module_name, function_name = JOBS[name]
    except KeyError:
        raise CoreError(f"Unknown job '{name}'; known jobs: {', '.join(sorted(JOBS))}.") from None
    module = importlib.import_module(f"{__package__}.{module_name}")
    return getattr(module, function_name)


def run_job(name: str, params: dict, feedback) -> dict:
    """Run a job by name with keyword parameters and feedback."""
    return get_job(name)(**params, feedback=feedback)
