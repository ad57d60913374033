"""The jobs the worker and the CLI run, by name, as the schemas declare them.

Each job is a core function taking keyword parameters and ``feedback`` and
returning a JSON-serialisable dict; it is imported on first use.
"""

from __future__ import annotations

import importlib

from .feedback import CoreError
from .schema import BY_NAME


def environment_info() -> dict:
    """Import TensorFlow and report versions and devices: the worker's health check."""
    from .diagnostics import worker_facts

    return worker_facts(smoke=False)


def get_job(name: str):
    """Return the core function of a job.

    Raises:
        CoreError: for an unknown job name.
    """
    if name == "ping":
        return lambda feedback=None: environment_info()
    if name == "diagnose":  # versions, devices and a timed tiny train step and prediction
        from .diagnostics import worker_facts

        return lambda feedback=None: worker_facts(smoke=True)
    job = BY_NAME.get(name)
    if job is None or not job.function:
        known = sorted(n for n, j in BY_NAME.items() if j.function)
        raise CoreError(f"Unknown job '{name}'; known jobs: {', '.join(known)}.")
    module_name, _, function_name = job.function.partition(":")
    module = importlib.import_module(f"{__package__}.{module_name}")
    return getattr(module, function_name)


def run_job(name: str, params: dict, feedback) -> dict:
    """Run a job by name with keyword parameters (the job checks them against its schema)."""
    return get_job(name)(**params, feedback=feedback)
