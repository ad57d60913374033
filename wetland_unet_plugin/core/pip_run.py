"""Running pip (and other helpers of setupworker) in a subprocess: output lines streamed
to a callback, cancel kills the whole process group, and pip's failures explained."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading

from .feedback import Canceled, Feedback


def subprocess_env(**extra) -> dict:
    """This process's environment without what points a Python at QGIS's own installation
    (PYTHONHOME and PYTHONPATH are set by QGIS's launcher on Windows), plus ``extra``."""
    env = dict(os.environ)
    for var in ("PYTHONHOME", "PYTHONPATH", "QGIS_PREFIX_PATH", "QT_PLUGIN_PATH"):
        env.pop(var, None)
    env.update(extra)
    return env


def stream(command, feedback: Feedback, on_line, env=None, timeout=None) -> tuple:
    """Run ``command``, passing each output line to ``on_line``; kill it on cancel.

    Returns:
        (exit code, the last 40 output lines).
    Raises:
        Canceled: when the user canceled (the process is killed first).
    """
    try:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env or subprocess_env(),
            start_new_session=os.name != "nt",
        )
    except OSError as err:
        return 127, [f"{command[0]}: {err}"]
    lines: queue.Queue = queue.Queue()

    def read():
        for raw in process.stdout:
            lines.put(raw.decode("utf-8", "replace").rstrip())
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    tail = []
    while True:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            line = ""
        if feedback.is_canceled():
            _kill(process)
            raise Canceled("Canceled by the user; pip was stopped.")
        if line is None:
            break
        if line:
            tail = (tail + [line])[-40:]
            on_line(line)
    return process.wait(timeout=timeout), tail


def _kill(process) -> None:
    try:
        if os.name != "nt":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except OSError:
        pass
    process.wait()


class PipProgress:
    """Turns pip's output lines into progress and a short log of its stages."""

    def __init__(self, feedback: Feedback, expected: int = 45):
        self.feedback, self.expected, self.collected = feedback, expected, 0

    def __call__(self, line: str) -> None:
        if line.startswith(("Collecting ", "Processing ")):  # Processing: a local wheel
            self.collected += 1
            self.feedback.progress(0.05 + 0.55 * min(self.collected / self.expected, 1.0))
            self.feedback.info(f"pip: {line}")
        elif line.startswith("Installing collected packages"):
            self.feedback.progress(0.65)
            self.feedback.info("pip: installing the downloaded packages...")
        elif line.startswith(("Successfully installed", "ERROR", "Downloading ")):
            self.feedback.info(f"pip: {line[:300]}")


def pip_failure(tail: list, by_hand: str) -> str:
    """A message naming the cause of a failed pip run and the command to run by hand."""
    text = "\n".join(tail)
    causes = (
        ("No space left on device", "the disk is full; free some space or choose another FOLDER"),
        (
            "ProxyError",
            "the proxy could not be reached or refused the connection; check the --proxy "
            "given in PIP_OPTIONS, or the system's proxy settings (HTTPS_PROXY)",
        ),
        (
            "No matching distribution",
            "a requirement has no version for this Python or platform, or the package "
            "registry could not be reached (no network, or a proxy: give it in PIP_OPTIONS)",
        ),
        ("Could not find a version", "a requirement has no version for this Python/platform"),
        ("NewConnectionError", "no network connection to the package registry"),
        ("Temporary failure in name resolution", "no network (the registry's name is unknown)"),
        ("SSLError", "a TLS error reaching the registry (a proxy that rewrites certificates?)"),
    )
    cause = next((why for key, why in causes if key in text), "pip failed")
    last = "\n".join(tail[-8:])
    return (
        f"Installing the worker's packages failed: {cause}. Nothing was recorded; the previous "
        f"worker (if any) is unchanged. pip said:\n{last}\nTo install by hand, run:\n{by_hand}"
    )
