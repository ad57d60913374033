"""Adapts QgsProcessingFeedback to the core's feedback protocol."""

from qgis.core import QgsProcessingException

from ..core.feedback import Canceled, CoreError, Feedback


class QgisFeedback(Feedback):
    """Core feedback backed by a QgsProcessingFeedback (progress bar, log, cancel)."""

    def __init__(self, feedback):
        self.feedback = feedback

    def progress(self, fraction: float) -> None:
        if self.feedback is not None:
            self.feedback.setProgress(100.0 * min(max(float(fraction), 0.0), 1.0))

    def info(self, text: str) -> None:
        if self.feedback is not None:
            self.feedback.pushInfo(text)

    def warning(self, text: str) -> None:
        if self.feedback is not None:
            self.feedback.pushWarning(text)

    def is_canceled(self) -> bool:
        return bool(self.feedback is not None and self.feedback.isCanceled())


def run_core(function, feedback, **params):
    """Call a core function with QGIS feedback, mapping its errors.

    Raises:
        QgsProcessingException: with the core's message (which says what to do).
    """
    try:
        return function(**params, feedback=QgisFeedback(feedback))
    except Canceled as err:
        raise QgsProcessingException(f"Canceled: {err} No output was written.") from None
    except CoreError as err:
        raise QgsProcessingException(str(err)) from None


def log_device(client, feedback) -> None:
    """Log the device the worker's TensorFlow runs on; warn, with the reason, when the
    machine has a GPU that TensorFlow does not see."""
    from ..core.diagnostics import device_line

    facts = client.device_facts()
    if feedback is not None:
        feedback.pushInfo(device_line(facts))
        if facts.get("gpu_reason"):
            feedback.pushWarning(facts["gpu_reason"])


def run_in_worker(job: str, feedback, **params):
    """Run a TensorFlow job in the worker process, mapping its errors.

    Raises:
        QgsProcessingException: with the core's or the worker's message.
    """
    from .settings import worker_python
    from .tensorflow_check import worker_ready
    from .worker_client import get_client

    ready, message = worker_ready()  # qgis_process and scripts do not ask canExecute()
    if not ready:
        raise QgsProcessingException(message)
    try:
        client = get_client(worker_python())
        log_device(client, feedback)
        return client.run(job, params, QgisFeedback(feedback))
    except Canceled as err:
        kept = getattr(err, "result", None)
        if kept:  # the user asked to keep the best model so far, and it was written whole
            if feedback is not None:
                feedback.pushWarning(f"Canceled: {err}")
            return dict(kept, canceled=True)
        raise QgsProcessingException(f"Canceled: {err}") from None
    except CoreError as err:
        raise QgsProcessingException(str(err)) from None
