"""The worker process QGIS talks to: JSON lines over stdin/stdout.

TensorFlow aborts QGIS when imported inside it (see the design), so train and
predict run here, in the environment's own Python, started on first use and
kept alive for the session (loaded models stay cached between jobs).

Requests (one JSON object per line on stdin)::

    {"type": "job", "id": 1, "job": "predict", "params": {...}}
    {"type": "cancel"}

Messages (one JSON object per line on stdout)::

    {"type": "ready", "pid": 123}
    {"type": "progress", "id": 1, "value": 0.42}
    {"type": "log", "id": 1, "level": "info", "text": "..."}
    {"type": "result", "id": 1, "value": {...}}
    {"type": "error", "id": 1, "kind": "CoreError" | "Canceled" | "internal",
     "message": "...", "traceback": "..."}

The worker exits by itself when stdin closes (QGIS gone): a running job is
canceled at its next batch or tile and its temporary outputs are removed, so
nothing appears at a destination later.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import traceback

from .atomic import remove_live_partials
from .feedback import Canceled, CoreError, Feedback


class _Channel:
    """Writes protocol messages to the real stdout, one line each, thread-safe."""

    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.Lock()

    def send(self, **message) -> None:
        line = json.dumps(message, default=str)
        with self.lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass  # the parent is gone; stdin EOF ends the job and the loop


class _JobFeedback(Feedback):
    """Feedback that sends progress and log lines and hears cancel from stdin."""

    def __init__(self, channel: _Channel, job_id, cancel_event: threading.Event):
        self.channel = channel
        self.job_id = job_id
        self.cancel_event = cancel_event
        self._last = -1.0

    def progress(self, fraction: float) -> None:
        fraction = float(min(max(fraction, 0.0), 1.0))
        if fraction - self._last >= 0.001 or fraction >= 1.0:
            self._last = fraction
            self.channel.send(type="progress", id=self.job_id, value=fraction)

    def info(self, text: str) -> None:
        self.channel.send(type="log", id=self.job_id, level="info", text=str(text))

    def warning(self, text: str) -> None:
        self.channel.send(type="log", id=self.job_id, level="warning", text=str(text))

    def is_canceled(self) -> bool:
        return self.cancel_event.is_set()


def _protocol_stdout():
    """Keep the real stdout for protocol lines; send fd 1 to stderr.

    Libraries (TensorFlow, GDAL, C extensions) sometimes print to stdout; those
    bytes must never corrupt the JSON stream.
    """
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", buffering=1, encoding="utf-8")


def serve(stdin=None) -> int:
    """Run the worker loop until stdin closes or a shutdown request arrives."""
    stdin = stdin or sys.stdin
    channel = _Channel(_protocol_stdout())
    requests: queue.Queue = queue.Queue()
    cancel = threading.Event()
    parent_gone = threading.Event()

    def read_stdin():
        for line in stdin:
            line = line.strip()
            if not line:
                continue
            try:
                message = json.loads(line)
            except ValueError:
                channel.send(
                    type="error", id=None, kind="protocol", message=f"not JSON: {line[:200]}"
                )
                continue
            if message.get("type") == "cancel":
                cancel.set()
            else:
                requests.put(message)
        parent_gone.set()
        cancel.set()
        requests.put(None)

    # Terminated (cancel that did not stop in time): unwind so atomic outputs clean up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    threading.Thread(target=read_stdin, name="stdin-reader", daemon=True).start()
    channel.send(type="ready", pid=os.getpid())
    from .jobs import run_job

    while True:
        request = requests.get()
        if request is None or request.get("type") == "shutdown":
            break
        job_id = request.get("id")
        cancel.clear()
        feedback = _JobFeedback(channel, job_id, cancel)
        try:
            value = run_job(request.get("job", ""), request.get("params") or {}, feedback)
            channel.send(type="result", id=job_id, value=value)
        except Canceled as err:
            # A canceled training may still have kept the best model so far (err.result).
            channel.send(
                type="error",
                id=job_id,
                kind="Canceled",
                message=str(err),
                result=getattr(err, "result", None),
            )
        except CoreError as err:
            channel.send(type="error", id=job_id, kind="CoreError", message=str(err))
        except Exception as err:  # report anything else with its traceback
            channel.send(
                type="error",
                id=job_id,
                kind="internal",
                message=f"{type(err).__name__}: {err}",
                traceback=traceback.format_exc(),
            )
        finally:
            remove_live_partials()
        if parent_gone.is_set():
            break
    remove_live_partials()
    return 0
