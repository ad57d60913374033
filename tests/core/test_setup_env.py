"""Building the worker environment (core/setup_env.py): TensorFlow build per platform and
DEVICE, and the failure paths a user meets, each with its cause and the command to run by
hand, leaving any previous environment as it was."""

import os
import stat
import sys

import pytest

from wetland_unet_plugin.core.diagnostics import gpu_reason
from wetland_unet_plugin.core.feedback import Canceled, CoreError, Feedback
from wetland_unet_plugin.core.setup_env import (
    MARKER,
    REQUIREMENTS,
    choose_tensorflow,
    setup_worker,
    venv_python,
    worker_requirements,
)


@pytest.mark.parametrize(
    "device, system, machine, nvidia, expected",
    [
        ("auto", "Linux", "x86_64", True, ["tensorflow[and-cuda]==2.21.0"]),
        ("auto", "Linux", "x86_64", False, ["tensorflow-cpu==2.21.0"]),
        ("auto", "Windows", "AMD64", True, ["tensorflow-cpu==2.21.0"]),
        ("auto", "Darwin", "arm64", False, ["tensorflow==2.21.0", "tensorflow-metal"]),
        ("cpu", "Linux", "x86_64", True, ["tensorflow-cpu==2.21.0"]),
        ("cpu", "Linux", "aarch64", False, ["tensorflow==2.21.0"]),
        ("gpu", "Linux", "x86_64", False, ["tensorflow[and-cuda]==2.21.0"]),
        ("gpu", "Darwin", "arm64", False, ["tensorflow==2.21.0", "tensorflow-metal"]),
    ],
)
def test_tensorflow_build_follows_device_and_platform(device, system, machine, nvidia, expected):
    chosen, reason = choose_tensorflow(device, "2.21.0", system, machine, nvidia)
    assert chosen == expected
    assert reason.startswith(f"DEVICE {device}")


def test_gpu_where_tensorflow_has_no_gpu_build_is_refused_with_the_alternative():
    with pytest.raises(CoreError, match="no GPU build for Windows.*WSL2.*DEVICE cpu"):
        choose_tensorflow("gpu", "2.21.0", "Windows", "AMD64", True)


def test_intel_mac_is_refused_before_pip_runs():
    with pytest.raises(CoreError, match="no build for Intel Macs"):
        choose_tensorflow("auto", "2.21.0", "Darwin", "x86_64", False)


def test_shipped_requirements_keep_their_pins_and_swap_only_tensorflow():
    """The shipped file pins the versions requirements.txt pins; DEVICE changes only the
    TensorFlow line, at the same version."""
    pins = {}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for line in open(os.path.join(root, "requirements.txt")):
        name, _, version = line.split("#")[0].strip().partition("==")
        pins[name] = version
    lines, reason = worker_requirements(REQUIREMENTS, "gpu", system="Linux", machine="x86_64")
    assert "tensorflow[and-cuda]==" + pins["tensorflow-cpu"] in lines
    for name in ("keras", "numpy", "h5py"):
        assert f"{name}=={pins[name]}" in lines
    assert any(line.startswith("rasterio==") for line in lines)
    assert not any(line.startswith("tensorflow-cpu") for line in lines)
    assert "CUDA" in reason


def test_gpu_reason_names_the_cpu_build_and_the_fix():
    machine = [{"name": "NVIDIA H200", "memory_mb": 143771}]
    reason = gpu_reason(machine, [], False, "tensorflow-cpu 2.21.0")
    assert "NVIDIA H200" in reason and "tensorflow-cpu" in reason and "DEVICE gpu" in reason
    assert gpu_reason(machine, [{"name": "NVIDIA H200"}], True, "tensorflow 2.21.0") == ""
    assert gpu_reason([], [], False, "tensorflow-cpu 2.21.0") == ""


def _old_environment(folder):
    """A previous, working environment: a marker and a file that must survive."""
    os.makedirs(folder)
    with open(os.path.join(folder, MARKER), "w") as handle:
        handle.write("{}")
    with open(os.path.join(folder, "keep.txt"), "w") as handle:
        handle.write("old")


def _unchanged(folder):
    assert sorted(os.listdir(folder)) == sorted([MARKER, "keep.txt"])
    assert open(os.path.join(folder, "keep.txt")).read() == "old"
    assert not os.path.exists(folder + ".old")


def test_folder_that_cannot_be_written_fails_before_anything_starts(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(CoreError, match="Cannot write in .*a_file.*Choose a FOLDER"):
        setup_worker(python=sys.executable, folder=str(blocker / "env"))
    assert blocker.read_text() == "not a folder"


def test_base_python_without_venv_names_the_fix_and_keeps_the_old_environment(tmp_path):
    """A Python whose `-m venv` fails (Debian without python3-venv): the message names the
    package, another PYTHON and the commands; the previous environment is put back."""
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho 'ensurepip is not available' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    folder = str(tmp_path / "env")
    _old_environment(folder)
    with pytest.raises(CoreError) as err:
        setup_worker(python=str(fake), folder=folder, device="cpu")
    message = str(err.value)
    assert "cannot make virtual environments" in message
    assert "ensurepip is not available" in message
    assert "python3-venv" in message and "another PYTHON" in message
    assert f"{fake} -m venv {folder}" in message
    assert f"{venv_python(folder)} -m pip install" in message and "tensorflow-cpu==" in message
    _unchanged(folder)


def test_a_folder_that_is_not_an_environment_is_left_alone(tmp_path):
    """FOLDER pointing at a user's folder with files (not a venv) is refused, untouched."""
    folder = tmp_path / "Documents"
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious")
    with pytest.raises(CoreError, match="exists and is not a Python environment"):
        setup_worker(python=sys.executable, folder=str(folder), device="cpu")
    assert os.listdir(folder) == ["thesis.txt"]
    assert (folder / "thesis.txt").read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["Documents"]


def test_missing_base_python_is_named(tmp_path):
    with pytest.raises(CoreError, match="PYTHON: .*nowhere.* does not exist"):
        setup_worker(python=str(tmp_path / "nowhere" / "python3"), folder=str(tmp_path / "e"))


@pytest.mark.slow
def test_broken_requirement_names_pip_cause_and_keeps_the_old_environment(tmp_path):
    """A requirement pip cannot find fails with pip's words, the cause and the command."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("wetland-unet-no-such-package==9.9.9\n")
    folder = str(tmp_path / "env")
    _old_environment(folder)
    with pytest.raises(CoreError) as err:
        setup_worker(
            python="/usr/bin/python3",
            folder=folder,
            requirements=str(requirements),
            pip_options="--no-cache-dir",
        )
    message = str(err.value)
    assert "Installing the worker's packages failed" in message
    assert "no version for this Python or platform" in message
    assert "wetland-unet-no-such-package" in message
    assert "-m pip install --disable-pip-version-check --progress-bar off" in message
    _unchanged(folder)


@pytest.mark.slow
def test_cancel_stops_pip_and_leaves_nothing(tmp_path):
    """Cancel during pip's first stage: pip is killed, no environment is left."""

    class CancelAtFirstPipLine(Feedback):
        def __init__(self):
            self.lines, self.canceled = [], False

        def info(self, text):
            self.lines.append(text)
            self.canceled = self.canceled or text.startswith("pip: Collecting")

        def is_canceled(self):
            return self.canceled

    folder = str(tmp_path / "env")
    feedback = CancelAtFirstPipLine()
    with pytest.raises(Canceled, match="pip was stopped"):
        setup_worker(python="/usr/bin/python3", folder=folder, device="cpu", feedback=feedback)
    assert any(line.startswith("pip: Collecting") for line in feedback.lines)
    assert not any(line.startswith("pip: Successfully") for line in feedback.lines)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_unreachable_proxy_is_named_as_the_cause(tmp_path):
    """A proxy nobody listens on (port 9): the message names the proxy, not the package."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("rasterio==1.4.3\n")
    folder = str(tmp_path / "env")
    with pytest.raises(CoreError) as err:
        setup_worker(
            python="/usr/bin/python3",
            folder=folder,
            requirements=str(requirements),
            pip_options="--proxy http://127.0.0.1:9 --retries 1 --timeout 3 --no-cache-dir "
            "--no-index --find-links https://pypi.org/simple/rasterio/",
        )
    message = str(err.value)
    assert "the proxy could not be reached or refused the connection" in message
    assert "--proxy http://127.0.0.1:9" in message  # in the command to run by hand
    assert os.listdir(tmp_path) == ["requirements.txt"]


@pytest.mark.slow
def test_environment_that_fails_its_check_is_not_kept(tmp_path):
    """pip succeeds but the new environment cannot run the tiny model (no TensorFlow in
    it): the check fails naming the missing module, and the old environment comes back."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("six\n")
    folder = str(tmp_path / "env")
    _old_environment(folder)
    with pytest.raises(CoreError) as err:
        setup_worker(python="/usr/bin/python3", folder=folder, requirements=str(requirements))
    message = str(err.value)
    assert "The new environment does not run TensorFlow" in message
    assert "No module named 'tensorflow'" in message and "wetlandunet:diagnostics" in message
    _unchanged(folder)
