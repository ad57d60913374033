"""canExecute() for the algorithms that need TensorFlow: can the worker import it?"""

from ..core.feedback import CoreError

_CHECKED = {}


def forget() -> None:
    """Forget the answers (after setupworker recorded a new worker)."""
    _CHECKED.clear()


def worker_ready():
    """Return (ok, message); starts the worker once per interpreter and caches the answer."""
    from .settings import worker_python
    from .worker_client import FIX_HINT, get_client

    python = worker_python()
    if python in _CHECKED:
        return _CHECKED[python]
    try:
        info = get_client(python).check_environment()
        answer = (True, f"TensorFlow {info.get('tensorflow')} in {python} ({info.get('device')})")
    except CoreError as err:
        answer = (
            False,
            f"TensorFlow is not available to Wetland U-Net in the worker Python "
            f"'{python}': {str(err).splitlines()[0]} {FIX_HINT}",
        )
    _CHECKED[python] = answer
    return answer
