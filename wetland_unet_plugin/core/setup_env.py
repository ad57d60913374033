"""Build the TensorFlow worker's environment: a virtual environment with pinned wheels.

The worker runs apart from QGIS's Python, so its environment may take PyPI's own
wheels (TensorFlow, rasterio with its bundled GDAL). ``setup_worker`` makes it
from a base Python with ``-m venv``, installs ``requirements-worker.txt`` with
pip (the TensorFlow build DEVICE asks for), checks it by training and applying
a tiny model in it, and only then marks it complete. An environment already
there is moved aside first and put back when anything fails or is canceled, so
a failed run leaves the previous worker working. Never imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import sys

from .feedback import CoreError, Feedback
from .pip_run import PipProgress, pip_failure, stream, subprocess_env
from .schema.environment import SETUP_WORKER

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(PACKAGE_DIR, "requirements-worker.txt")
#: Written into a finished environment after its smoke test passed.
MARKER = "wetland_unet_worker.json"
#: Free space needed before starting (TensorFlow's CPU build takes ~1.5 GB, CUDA's ~6 GB).
NEEDED_GB = {"cpu": 2.5, "gpu": 8.0}


def default_base_python() -> str:
    """The Python QGIS runs on, as an interpreter that can make environments.

    In QGIS ``sys.executable`` may be the QGIS binary (qgis-bin.exe on Windows, the
    app bundle on macOS), so the interpreter is looked for beside it and in
    ``sys.prefix``.
    """
    exe = sys.executable or ""
    system = platform.system()
    if system == "Windows":
        folders = [os.path.dirname(exe), sys.prefix, sys.exec_prefix]
        candidates = [os.path.join(f, n) for f in folders for n in ("python.exe", "python3.exe")]
    elif system == "Darwin":
        candidates = [os.path.join(sys.prefix, "bin", "python3"), exe]
    else:
        candidates = [exe, "/usr/bin/python3", shutil.which("python3") or ""]
    for candidate in candidates:
        if (
            candidate
            and os.path.basename(candidate).lower().startswith("python")
            and os.path.isfile(candidate)
        ):
            return candidate
    return shutil.which("python3") or shutil.which("python") or "python3"


def default_folder() -> str:
    """Where the environment goes when neither the user nor QGIS's profile says."""
    base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~/.local/share")
    return os.path.join(base, "wetland_unet", "worker")


def venv_python(folder: str) -> str:
    """The interpreter of the environment in ``folder``."""
    if platform.system() == "Windows":
        return os.path.join(folder, "Scripts", "python.exe")
    return os.path.join(folder, "bin", "python")


def choose_tensorflow(device: str, version: str, system=None, machine=None, nvidia=None):
    """The TensorFlow requirement(s) for DEVICE on this platform, and why.

    Args:
        device: ``auto``, ``cpu`` or ``gpu``.
        version: the pinned TensorFlow version.
        system, machine: ``platform.system()``/``machine()`` (given in tests).
        nvidia: whether an NVIDIA driver is present (default: ``nvidia-smi`` on PATH).

    Returns:
        (requirements, reason) with the reason for the log.

    Raises:
        CoreError: DEVICE gpu where TensorFlow has no GPU build.
    """
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    nvidia = bool(shutil.which("nvidia-smi")) if nvidia is None else nvidia
    apple_silicon = system == "Darwin" and machine in ("arm64", "aarch64")
    cpu_build = (
        [f"tensorflow-cpu=={version}"]
        if system in ("Linux", "Windows") and machine in ("x86_64", "amd64")
        else [f"tensorflow=={version}"]
    )
    if system == "Darwin" and not apple_silicon:
        raise CoreError(
            f"TensorFlow {version} has no build for Intel Macs (the last one is 2.16): the "
            "worker cannot be installed here. Run train and predict on another machine with "
            "the core CLI, or use a Mac with Apple silicon."
        )
    if device == "auto":
        if system == "Linux" and nvidia:
            return [f"tensorflow[and-cuda]=={version}"], (
                "DEVICE auto: an NVIDIA driver is present (nvidia-smi found), so TensorFlow's "
                "CUDA build, tensorflow[and-cuda], is installed."
            )
        if apple_silicon:
            return [f"tensorflow=={version}", "tensorflow-metal"], (
                "DEVICE auto: Apple silicon, so TensorFlow with the Metal plug-in "
                "(tensorflow-metal) is installed for the GPU."
            )
        why = "no NVIDIA driver (nvidia-smi not found)"
        if system == "Windows":
            why = "TensorFlow has no GPU build for native Windows since 2.10"
        return cpu_build, f"DEVICE auto: {why}, so the CPU build {cpu_build[0]} is installed."
    if device == "gpu":
        if system == "Linux":
            return [f"tensorflow[and-cuda]=={version}"], (
                "DEVICE gpu: TensorFlow's CUDA build, tensorflow[and-cuda] (needs an NVIDIA "
                "driver)."
            )
        if apple_silicon:
            return [f"tensorflow=={version}", "tensorflow-metal"], (
                "DEVICE gpu: TensorFlow with the Metal plug-in (tensorflow-metal)."
            )
        raise CoreError(
            f"DEVICE gpu: TensorFlow has no GPU build for {system} {machine} (on Windows, "
            "use WSL2 for the GPU). Choose DEVICE cpu or auto."
        )
    return cpu_build, f"DEVICE cpu: the CPU build {cpu_build[0]} is installed."


def worker_requirements(path: str, device: str, **platform_info):
    """The requirement lines of ``path`` with its TensorFlow line swapped for DEVICE's.

    Returns:
        (lines, reason).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [ln.split("#", 1)[0].strip() for ln in handle]
    except OSError as err:
        raise CoreError(f"Cannot read the requirements file {path} ({err}).") from None
    lines = [ln for ln in lines if ln]
    out, reason = [], "no TensorFlow line in the requirements: installed as listed."
    for line in lines:
        match = re.match(r"^tensorflow(-cpu)?(\[[^\]]*\])?\s*==\s*([\w.]+)$", line)
        if match:
            chosen, reason = choose_tensorflow(device, match.group(3), **platform_info)
            out.extend(chosen)
        else:
            out.append(line)
    return out, reason


def _check_folder(folder: str, device: str) -> None:
    parent = os.path.dirname(folder)
    try:
        os.makedirs(parent, exist_ok=True)
        probe = os.path.join(parent, f".wetland_unet_write_test_{os.getpid()}")
        with open(probe, "w") as handle:
            handle.write("ok")
        os.remove(probe)
    except OSError as err:
        raise CoreError(
            f"Cannot write in {parent} ({err.strerror or err}). Choose a FOLDER you may "
            "write to (the default is in your QGIS profile)."
        ) from None
    free_gb = shutil.disk_usage(parent).free / 1e9
    if free_gb < NEEDED_GB[device]:
        raise CoreError(
            f"Not enough disk space in {parent}: {free_gb:.1f} GB free, the worker's "
            f"environment needs about {NEEDED_GB[device]:g} GB. Free some space or choose "
            "another FOLDER."
        )


def _replaceable(folder: str) -> bool:
    """A folder setupworker may move aside and rebuild: an environment, or empty."""
    return os.path.isdir(folder) and (
        not os.listdir(folder)
        or os.path.isfile(os.path.join(folder, "pyvenv.cfg"))
        or os.path.isfile(os.path.join(folder, MARKER))
    )


def _restore(folder: str, old: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if os.path.isdir(old):
        os.replace(old, folder)


def setup_worker(python=None, folder=None, *, feedback=None, **params) -> dict:
    """Create or repair the worker environment, check it, and return its interpreter.

    Args:
        python: the base interpreter (default: ``default_base_python()``).
        folder: the environment's folder (default: ``default_folder()``).
        feedback: a :class:`Feedback` for progress, log and cancel.
        **params: ``device`` (auto, cpu, gpu), ``requirements`` (default: the plugin's
            requirements-worker.txt), ``pip_options`` (extra pip arguments).

    Returns:
        ``{"worker_python", "folder", "tensorflow", "devices", "device_choice", "facts"}``.

    Raises:
        CoreError: with the cause and the command to run by hand; Canceled on cancel.
    """
    feedback = feedback or Feedback()
    p = SETUP_WORKER.check(dict(params, python=python, folder=folder))
    base = p["python"] or default_base_python()
    folder = os.path.abspath(p["folder"] or default_folder())
    requirements = p["requirements"] or REQUIREMENTS
    lines, reason = worker_requirements(requirements, p["device"])
    feedback.info(reason)
    if not os.path.isfile(base) and not shutil.which(base):
        raise CoreError(f"PYTHON: {base} does not exist. Choose a Python 3 interpreter.")
    device = "gpu" if any("cuda" in ln or "metal" in ln for ln in lines) else "cpu"
    _check_folder(folder, device)
    if os.path.exists(folder) and not _replaceable(folder):
        raise CoreError(
            f"FOLDER {folder} exists and is not a Python environment; it is left alone. "
            "Choose a new or empty folder (or the worker's own folder to repair it)."
        )
    old = folder + ".old"
    if _replaceable(old):  # a previous run was killed mid-way: its old environment is there
        if not os.path.isfile(os.path.join(folder, MARKER)):
            _restore(folder, old)
        else:
            shutil.rmtree(old, ignore_errors=True)
    elif os.path.exists(old):
        raise CoreError(f"{old} is in the way (not an environment); move or rename it.")
    if os.path.isdir(folder):
        feedback.info(f"Repairing: {folder} is moved aside and rebuilt.")
        os.replace(folder, old)
    vpy = venv_python(folder)
    pip_args = ["--disable-pip-version-check", "--progress-bar", "off"]
    pip_args += shlex.split(p["pip_options"] or "")
    by_hand = f"  {base} -m venv {folder}\n  {vpy} -m pip install {' '.join(pip_args)} " + " ".join(
        shlex.quote(ln) for ln in lines
    )
    try:
        feedback.info(f"Creating the environment with {base} -m venv {folder}")
        code, tail = stream([base, "-m", "venv", folder], feedback, lambda line: None)
        if code != 0 or not os.path.isfile(vpy):
            raise CoreError(
                f"{base} cannot make virtual environments (python -m venv failed: "
                f"{' '.join(tail[-3:]) or f'exit code {code}'}). On Debian/Ubuntu install "
                "python3-venv (sudo apt install python3-venv); elsewhere choose another PYTHON "
                f"(a python.org or conda Python 3.10-3.12). To do it by hand:\n{by_hand}"
            )
        feedback.progress(0.05)
        feedback.info("Installing " + ", ".join(lines))
        code, tail = stream(
            [vpy, "-m", "pip", "install", *pip_args, *lines], feedback, PipProgress(feedback)
        )
        if code != 0:
            raise CoreError(pip_failure(tail, by_hand))
        feedback.progress(0.85)
        facts = verify(vpy, feedback)
        with open(os.path.join(folder, MARKER), "w", encoding="utf-8") as handle:
            json.dump({"requirements": lines, "device_choice": reason, "facts": facts}, handle)
    except BaseException:
        _restore(folder, old)
        raise
    shutil.rmtree(old, ignore_errors=True)
    feedback.progress(1.0)
    devices = ", ".join(f"{d['type']}: {d['name']}" for d in facts["devices"])
    return {
        "worker_python": vpy,
        "folder": folder,
        "tensorflow": facts["tensorflow"],
        "devices": devices,
        "device_choice": reason,
        "facts": facts,
    }


def verify(python: str, feedback: Feedback | None = None) -> dict:
    """Train and apply a tiny model with ``python``; returns its ``worker_facts``.

    Raises:
        CoreError: when TensorFlow or the smoke test fails there.
    """
    feedback = feedback or Feedback()
    feedback.info("Checking the new environment: a tiny model's train step and prediction...")
    env = subprocess_env(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.path.dirname(PACKAGE_DIR))
    code = (
        "import json; from wetland_unet_plugin.core.diagnostics import worker_facts; "
        "print('WETLAND_FACTS ' + json.dumps(worker_facts(smoke=True)))"
    )
    found = {}

    def on_line(line):
        if line.startswith("WETLAND_FACTS "):
            found["facts"] = json.loads(line[len("WETLAND_FACTS ") :])

    status, tail = stream([python, "-c", code], feedback, on_line, env=env)
    facts = found.get("facts")
    if status != 0 or not facts or "error" in facts.get("smoke", {"error": "none"}):
        problem = (facts or {}).get("smoke", {}).get("error") or "\n".join(tail[-10:])
        raise CoreError(
            f"The new environment does not run TensorFlow: {problem}. Nothing was recorded; "
            "the previous worker (if any) is unchanged. Run wetlandunet:diagnostics for details."
        )
    smoke = facts["smoke"]
    feedback.info(
        f"TensorFlow {facts['tensorflow']} works: train step {smoke['train_step_s']} s, "
        f"prediction {smoke['predict_s']} s, on {facts['device']}."
    )
    if facts.get("gpu_reason"):
        feedback.warning(facts["gpu_reason"])
    return facts
