"""Atomic outputs: write beside the destination, rename into place when complete."""

from __future__ import annotations

import contextlib
import os
import uuid

#: Marker in the name of every temporary output, so cleanup can find them.
PARTIAL_MARK = ".partial-"

#: Temporary outputs of this process that exist right now.
LIVE_PARTIALS: set = set()


def partial_path(destination: str) -> str:
    """Return a temporary path beside ``destination`` with the same extension.

    Args:
        destination: final output path.

    Returns:
        A hidden path in the same folder (same file system, so the final
        rename is atomic) that names the destination and this process.
    """
    folder, name = os.path.split(os.path.abspath(destination))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}{PARTIAL_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}{ext}")


def remove_quietly(path: str) -> None:
    """Remove a file and its GDAL sidecars if they exist."""
    for candidate in (path, path + ".aux.xml", path + ".ovr", path + ".msk"):
        with contextlib.suppress(OSError):
            os.remove(candidate)


@contextlib.contextmanager
def atomic_output(destination: str):
    """Yield a temporary path; move it to ``destination`` only when the block succeeds.

    On any exception (including cancel) the temporary file is removed and the
    destination is left as it was.

    Args:
        destination: final output path.

    The temporary path is listed in ``LIVE_PARTIALS`` while it exists, so a
    worker whose parent died can remove what it leaves (``remove_live_partials``).
    """
    tmp = partial_path(destination)
    LIVE_PARTIALS.add(tmp)
    try:
        yield tmp
        os.replace(tmp, destination)
        aux = tmp + ".aux.xml"
        if os.path.exists(aux):
            os.replace(aux, destination + ".aux.xml")
    except BaseException:
        remove_quietly(tmp)
        raise
    finally:
        LIVE_PARTIALS.discard(tmp)


def remove_live_partials() -> None:
    """Remove every temporary output this process has open (used on abrupt exit)."""
    for tmp in list(LIVE_PARTIALS):
        remove_quietly(tmp)
        LIVE_PARTIALS.discard(tmp)


def remove_partials_of(destination: str, pid: int) -> list:
    """Remove the temporary outputs that process ``pid`` left for ``destination``.

    Used by the worker's parent after the worker died (killed, out of memory): a
    dead process cannot clean up after itself.

    Returns:
        The paths removed.
    """
    import glob

    folder, name = os.path.split(os.path.abspath(destination))
    stem, ext = os.path.splitext(name)
    pattern = os.path.join(glob.escape(folder), f".{glob.escape(stem)}{PARTIAL_MARK}{pid}-*{ext}")
    removed = []
    for path in glob.glob(pattern):
        remove_quietly(path)
        removed.append(path)
    return removed
