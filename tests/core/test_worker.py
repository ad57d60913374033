"""The worker process and its client: JSON lines, errors, crashes, parent death.

The client lives in processing/ but never imports qgis, so it is tested here
against a real worker process running the environment's Python.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from wetland_unet_plugin.core.feedback import CoreError
from wetland_unet_plugin.processing.worker_client import WorkerClient, WorkerError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def client():
    worker = WorkerClient(sys.executable)
    yield worker
    worker.stop()


@pytest.mark.slow
def test_ping_imports_tensorflow_in_the_worker(client):
    """The health check reports the worker's TensorFlow, and the worker is another process."""
    info = client.run("ping", {})
    assert info["tensorflow"].startswith("2.")
    assert info["keras"].startswith("3.")
    assert client.pid != os.getpid()


def test_core_errors_come_back_with_their_message_and_the_worker_survives(client):
    """An error inside a job is a CoreError in the caller; the same worker runs the next job."""
    with pytest.raises(CoreError, match="Unknown job"):
        client.run("no-such-job", {})
    pid = client.pid
    with pytest.raises(CoreError, match="does not exist"):
        client.run("clean", {"input": "/nonexistent/scene.tif", "output": "/tmp/x.tif"})
    assert client.pid == pid
    assert client.starts == 1


@pytest.mark.slow
def test_a_killed_worker_is_reported_and_replaced(client):
    """SIGKILL of the worker: the next job gets a fresh worker and works."""
    client.run("ping", {})
    first = client.pid
    os.kill(first, signal.SIGKILL)
    time.sleep(0.5)
    info = client.run("ping", {})
    assert info["tensorflow"]
    assert client.pid != first and client.starts == 2


def test_worker_exits_when_its_stdin_closes():
    """A worker whose parent is gone (stdin closed) exits by itself."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    process = subprocess.Popen(
        [sys.executable, "-m", "wetland_unet_plugin.core", "worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    ready = json.loads(process.stdout.readline())
    assert ready["type"] == "ready" and ready["pid"] == process.pid
    process.stdin.close()
    assert process.wait(timeout=30) == 0


def test_worker_that_cannot_start_says_what_to_do():
    """A missing interpreter gives a WorkerError naming the fix."""
    client = WorkerClient("/nonexistent/python3")
    with pytest.raises(WorkerError, match="make setup"):
        client.run("ping", {})
