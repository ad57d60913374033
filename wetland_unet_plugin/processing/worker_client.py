"""Client side of the worker process: TensorFlow work runs outside QGIS's process.

One worker per QGIS process, started on first use and kept for the session
(models stay cached there across a batch of scenes). Never imports qgis either,
so it can be tested and reused on its own; the algorithms map its errors.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

from ..core.atomic import remove_partials_of
from ..core.feedback import Canceled, CoreError, Feedback
from ..core.setup_env import MARKER

#: Environment variable that overrides the worker interpreter (setting and default).
PYTHON_ENV_VAR = "WETLAND_UNET_PYTHON"
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Written by `make deploy` beside the installed package: the environment it made.
RECORDED_PYTHON_FILE = os.path.join(PACKAGE_DIR, "worker_python.txt")
FIX_HINT = (
    "Run 'Install or repair the TensorFlow worker' (wetlandunet:setupworker) in the "
    "Processing Toolbox, under Wetland U-Net > Worker environment, to build one; "
    "'Check the TensorFlow worker' (wetlandunet:diagnostics) says what is wrong. Developers: "
    "`make setup` then `make deploy`, or set the worker Python in Settings > Options > "
    "Processing > Providers > Wetland U-Net."
)


class WorkerError(CoreError):
    """The worker died or could not start; the message carries its stderr tail."""


def default_python() -> str:
    """The worker interpreter when the user set none (see ``default_python_source``)."""
    return default_python_source()[0]


def default_python_source() -> tuple:
    """(interpreter, how it was chosen) when the user set none.

    Order: $WETLAND_UNET_PYTHON, the environment recorded by `make deploy`, the
    source checkout's .venv, and the Python running now when it is not QGIS.
    """
    if os.environ.get(PYTHON_ENV_VAR):
        return os.environ[PYTHON_ENV_VAR], f"the {PYTHON_ENV_VAR} environment variable"
    if os.path.isfile(RECORDED_PYTHON_FILE):
        with open(RECORDED_PYTHON_FILE, encoding="utf-8") as handle:
            recorded = handle.read().strip()
        if recorded:
            return recorded, f"recorded by `make deploy` in {RECORDED_PYTHON_FILE}"
    checkout_venv = os.path.join(os.path.dirname(PACKAGE_DIR), ".venv", "bin", "python")
    if os.path.isfile(checkout_venv):
        return checkout_venv, "the source checkout's .venv"
    executable = sys.executable or ""
    if os.path.basename(executable).startswith("python"):
        return executable, "the Python running now"
    return "python3", "none found: python3 on PATH"


class WorkerClient:
    """Talks JSON lines to one worker process; restarts it after a crash."""

    def __init__(self, python: str | None = None):
        self.python = python
        self.process: subprocess.Popen | None = None
        self._messages: queue.Queue | None = None
        self._stderr_file = None
        self._lock = threading.Lock()
        self._next_id = 0
        self.jobs_run = 0
        self.starts = 0
        self._facts = (None, None)  # (start number, ping facts) for device_facts()

    # -- process management -------------------------------------------------
    def _command(self) -> list[str]:
        return [self.python or default_python(), "-m", "wetland_unet_plugin.core", "worker"]

    def _start(self) -> None:
        env = dict(os.environ)
        env.pop("PYTHONHOME", None)  # set by QGIS's launcher on Windows: not the worker's
        parent = os.path.dirname(PACKAGE_DIR)
        python = self.python or default_python()
        # An environment built by setupworker has its own libraries: QGIS's PYTHONPATH
        # (its numpy, its GDAL bindings) must not shadow them.
        isolated = os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(python)), MARKER))
        inherited = "" if isolated else env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = parent + (os.pathsep + inherited if inherited else "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["PYTHONUNBUFFERED"] = "1"
        for var in ("QGIS_PREFIX_PATH", "QT_PLUGIN_PATH"):
            env.pop(var, None)
        self._stderr_file = tempfile.TemporaryFile(mode="w+b", prefix="wetland_unet_worker_")
        command = self._command()
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr_file,
                env=env,
                cwd=parent,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as err:
            self.process = None
            raise WorkerError(
                f"Cannot start the Wetland U-Net worker with '{command[0]}' ({err}). {FIX_HINT}"
            ) from None
        self.starts += 1
        self._messages = queue.Queue()
        threading.Thread(
            target=self._read_stdout,
            args=(self.process, self._messages),
            name="wetland-unet-worker-reader",
            daemon=True,
        ).start()
        message = self._next_message(timeout=120.0)
        if message is None or message.get("type") != "ready":
            tail = self.stderr_tail()
            self.stop()
            raise WorkerError(
                f"The Wetland U-Net worker ('{command[0]}') did not start: "
                f"{tail or 'no output'}. {FIX_HINT}"
            )

    @staticmethod
    def _read_stdout(process, messages: queue.Queue) -> None:
        try:
            for raw in process.stdout:
                try:
                    messages.put(json.loads(raw.decode("utf-8")))
                except ValueError:
                    continue
        except (OSError, ValueError):  # stdout closed by stop()
            pass
        messages.put(None)  # EOF: the worker is gone

    def _next_message(self, timeout: float):
        try:
            return self._messages.get(timeout=timeout)
        except queue.Empty:
            return {"type": "timeout"}

    def alive(self) -> bool:
        """True while the worker process runs."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self):
        """The worker's process id (None when not running)."""
        return self.process.pid if self.alive() else None

    def stderr_tail(self, lines: int = 15) -> str:
        """The last lines the worker wrote to stderr."""
        if self._stderr_file is None:
            return ""
        try:
            self._stderr_file.flush()
            self._stderr_file.seek(0)
            text = self._stderr_file.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        kept = [ln for ln in text.splitlines() if ln.strip()]
        return "\n".join(collections.deque(kept, maxlen=lines))

    def stop(self, grace: float = 5.0) -> None:
        """Close the worker: stdin closed, then terminate, then kill."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.stdin and not process.stdin.closed:
                process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None

    # -- jobs ------------------------------------------------------------------
    def _send(self, message: dict) -> None:
        self.process.stdin.write((json.dumps(message) + "\n").encode("utf-8"))
        self.process.stdin.flush()

    def run(
        self, job: str, params: dict, feedback: Feedback | None = None, cancel_grace: float = 30.0
    ) -> dict:
        """Run one job in the worker and return its result.

        Args:
            job: job name (see core.jobs).
            params: keyword parameters of the core function (JSON-serialisable).
            feedback: core Feedback; progress and log lines are forwarded to it, and
                its is_canceled() is polled to send a cancel request.
            cancel_grace: seconds the worker gets to stop after a cancel before it
                is terminated.

        Raises:
            Canceled: when the job was canceled.
            CoreError: the job's own error (bad input, ...).
            WorkerError: when the worker died or could not start.
        """
        feedback = feedback or Feedback()
        with self._lock:
            if not self.alive():
                self.stop()
                self._start()
            self._next_id += 1
            job_id = self._next_id
            try:
                self._send({"type": "job", "id": job_id, "job": job, "params": params})
            except OSError:
                return self._died(job, params)
            cancel_sent_at = None
            while True:
                message = self._next_message(timeout=0.1)
                if feedback.is_canceled() and cancel_sent_at is None:
                    cancel_sent_at = time.monotonic()
                    feedback.info("Canceling: the worker stops at the next batch or tile...")
                    try:
                        self._send({"type": "cancel"})
                    except OSError:
                        pass
                if cancel_sent_at is not None and time.monotonic() - cancel_sent_at > cancel_grace:
                    self.stop(grace=2.0)
                    raise Canceled(
                        "Canceled by the user; the worker did not stop in "
                        f"{cancel_grace:.0f} s and was ended. No output was written."
                    )
                if message is None:
                    return self._died(job, params)
                kind = message.get("type")
                if kind == "timeout" or message.get("id") not in (job_id, None):
                    continue
                if kind == "progress":
                    feedback.progress(float(message.get("value", 0.0)))
                elif kind == "log":
                    if message.get("level") == "warning":
                        feedback.warning(message.get("text", ""))
                    else:
                        feedback.info(message.get("text", ""))
                elif kind == "result":
                    self.jobs_run += 1
                    return message.get("value") or {}
                elif kind == "error":
                    self.jobs_run += 1
                    if message.get("kind") == "Canceled":
                        canceled = Canceled(message.get("message") or "Canceled by the user.")
                        canceled.result = message.get("result")
                        raise canceled
                    if message.get("kind") == "CoreError":
                        raise CoreError(message.get("message", ""))
                    raise CoreError(
                        f"Internal error in the worker: {message.get('message')}\n"
                        f"{message.get('traceback', '')}"
                    )

    def _died(self, job: str, params: dict):
        process = self.process
        pid = process.pid if process else None
        code = process.poll() if process else None
        if process is not None and code is None:
            try:
                code = process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
        tail = self.stderr_tail()
        self.stop(grace=1.0)
        if pid is not None:  # a dead worker cannot remove its temporary outputs: do it here
            for key, value in params.items():
                if key.startswith("output") and isinstance(value, str) and value:
                    remove_partials_of(value, pid)
        how = (
            "was killed (signal %d)" % -code
            if code is not None and code < 0
            else (f"exited with code {code}" if code is not None else "stopped answering")
        )
        if code is not None and -code == 9:
            how += "; out of memory or killed by another process"
        raise WorkerError(
            f"The Wetland U-Net worker {how} while running '{job}'. The next "
            f"job starts a fresh worker; no output was written.\nLast worker "
            f"messages:\n{tail or '(none)'}"
        )

    def check_environment(self) -> dict:
        """Start the worker if needed and import TensorFlow there; returns versions."""
        return self.run("ping", {})

    def device_facts(self) -> dict:
        """The worker's versions and devices (``core.diagnostics.worker_facts``), asked once
        per worker start."""
        if not self.alive() or self._facts[0] != self.starts:
            facts = self.check_environment()
            self._facts = (self.starts, facts)
        return self._facts[1]


_CLIENT: WorkerClient | None = None
_CLIENT_LOCK = threading.Lock()


def get_client(python: str | None = None) -> WorkerClient:
    """The worker client of this process (a new one when the interpreter changed)."""
    global _CLIENT
    with _CLIENT_LOCK:
        wanted = python or default_python()
        if _CLIENT is None or (_CLIENT.python or default_python()) != wanted:
            if _CLIENT is not None:
                _CLIENT.stop()
            _CLIENT = WorkerClient(wanted)
        return _CLIENT


def shutdown_client() -> None:
    """Stop the worker of this process (plugin unload, tests)."""
    global _CLIENT
    with _CLIENT_LOCK:
        if _CLIENT is not None:
            _CLIENT.stop()
            _CLIENT = None
