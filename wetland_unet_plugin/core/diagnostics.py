"""What the worker environment is and can do: facts for the log and for bug reports.

``worker_facts`` runs in the worker (it imports TensorFlow): versions, the
devices TensorFlow sees, the GPUs the machine has (nvidia-smi) and, when the two
disagree, why; with ``smoke=True`` a timed train step and prediction of a tiny
model. ``render_report`` turns the facts gathered on both sides into the
HTML or text report of ``wetlandunet:diagnostics``; it imports nothing heavy.
"""

from __future__ import annotations

import html
import importlib
import platform
import shutil
import subprocess
import sys
import time

from .atomic import atomic_output


def machine_gpus() -> list:
    """NVIDIA GPUs the driver reports, as ``{"name", "memory_mb"}`` (empty without one).

    Asked of ``nvidia-smi``, which comes with the driver: it tells whether the machine
    has a GPU whatever TensorFlow build is installed.
    """
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        name, _, memory = line.rpartition(",")
        if name.strip():
            try:
                gpus.append({"name": name.strip(), "memory_mb": int(float(memory))})
            except ValueError:
                gpus.append({"name": line.strip(), "memory_mb": None})
    return gpus


def gpu_reason(machine: list, seen: list, built_with_cuda: bool, tf_package: str) -> str:
    """Why TensorFlow sees no GPU although the machine has one ('' when nothing is amiss)."""
    if not machine or seen:
        return ""
    names = ", ".join(g["name"] for g in machine)
    if platform.system() == "Windows":
        return (
            f"The machine has {names}, but TensorFlow after 2.10 runs on the CPU only on "
            "native Windows; use WSL2 for the GPU. Training and prediction run on the CPU."
        )
    if not built_with_cuda:
        return (
            f"The machine has {names}, but the worker has TensorFlow's CPU build "
            f"({tf_package}). Run 'Install or repair the TensorFlow worker' "
            "(wetlandunet:setupworker) with DEVICE gpu to install tensorflow[and-cuda]."
        )
    return (
        f"The machine has {names} and TensorFlow is built with CUDA, but it could not use "
        "the GPU: the CUDA libraries or the driver did not load (the driver may be older "
        "than this TensorFlow needs; see the worker's log). Update the NVIDIA driver, or run "
        "wetlandunet:setupworker with DEVICE gpu to reinstall tensorflow[and-cuda]."
    )


def _version(module: str) -> str:
    try:
        return importlib.import_module(module).__version__
    except Exception as err:  # any import failure is a fact to report, not a crash
        return f"missing ({type(err).__name__}: {err})"


def _tf_package() -> str:
    from importlib import metadata

    for name in ("tensorflow-cpu", "tensorflow", "tensorflow-macos", "tensorflow-intel"):
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def smoke_test() -> dict:
    """Train a tiny U-Net for one step and predict with it; returns the times in seconds."""
    import numpy as np

    from .unet import build_unet

    start = time.perf_counter()
    model = build_unet(3, 2, filters=4, depth=2)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((2, 16, 16, 3), dtype=np.float32)
    y = rng.integers(0, 2, (2, 16, 16)).astype(np.int32)
    built = time.perf_counter()
    loss = float(model.train_on_batch(x, y))
    trained = time.perf_counter()
    probabilities = model.predict(x, verbose=0)
    done = time.perf_counter()
    if probabilities.shape != (2, 16, 16, 2) or not np.isfinite(loss):
        raise RuntimeError(f"smoke test gave shape {probabilities.shape} and loss {loss}")
    return {
        "build_s": round(built - start, 3),
        "train_step_s": round(trained - built, 3),
        "predict_s": round(done - trained, 3),
        "loss": round(loss, 4),
    }


def worker_facts(smoke: bool = False) -> dict:
    """Versions and devices of this (worker) process; with ``smoke`` the timed smoke test.

    Imports TensorFlow: call it in the worker, never in QGIS's process.
    """
    tf = importlib.import_module("tensorflow")  # first: its absence is what users must hear
    devices = []
    for device in tf.config.list_physical_devices():
        entry = {"type": device.device_type, "name": device.name}
        if device.device_type == "GPU":
            try:
                details = tf.config.experimental.get_device_details(device)
                entry["name"] = details.get("device_name") or device.name
                if details.get("compute_capability"):
                    entry["compute_capability"] = ".".join(map(str, details["compute_capability"]))
            except Exception:  # details are a bonus
                pass
        devices.append(entry)
    seen = [d for d in devices if d["type"] == "GPU"]
    machine = machine_gpus()
    for entry, gpu in zip(seen, machine):
        entry["memory_mb"] = gpu["memory_mb"]
    built_with_cuda = bool(tf.test.is_built_with_cuda())
    package = _tf_package()
    try:
        import rasterio

        rasterio_version, gdal_version = rasterio.__version__, rasterio.__gdal_version__
    except Exception as err:
        rasterio_version, gdal_version = f"missing ({err})", "unknown"
    facts = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "tensorflow_package": package,
        "built_with_cuda": built_with_cuda,
        "keras": _version("keras"),
        "numpy": _version("numpy"),
        "rasterio": rasterio_version,
        "gdal": gdal_version,
        "devices": devices,
        "gpus": [d["name"] for d in seen],
        "machine_gpus": machine,
        "gpu_reason": gpu_reason(machine, seen, built_with_cuda, package),
        "device": seen[0]["name"] if seen else "CPU",
    }
    if smoke:
        try:
            facts["smoke"] = smoke_test()
        except Exception as err:
            facts["smoke"] = {"error": f"{type(err).__name__}: {err}"}
    return facts


def device_line(facts: dict) -> str:
    """One log line naming the device a job runs on."""
    if facts.get("gpus"):
        return f"Running on GPU: {', '.join(facts['gpus'])} (TensorFlow {facts.get('tensorflow')})"
    return f"Running on the CPU (TensorFlow {facts.get('tensorflow')}; no GPU seen)"


def _rows(report: dict) -> list:
    """(section, [(label, value)]) pairs of the report, in reading order."""
    worker = report.get("worker") or {}
    devices = worker.get("devices") or []
    smoke = worker.get("smoke") or {}
    disk = report.get("disk") or {}
    sections = [
        ("QGIS", list((report.get("qgis") or {}).items())),
        (
            "Worker",
            [
                ("worker Python", report.get("worker_python")),
                ("chosen by", report.get("worker_python_source")),
            ]
            + [
                (k, worker.get(k))
                for k in (
                    "python",
                    "platform",
                    "tensorflow",
                    "tensorflow_package",
                    "keras",
                    "numpy",
                    "rasterio",
                    "gdal",
                )
                if k in worker
            ],
        ),
        (
            "Devices",
            [("GPUs TensorFlow sees", ", ".join(worker.get("gpus") or []) or "none")] * bool(worker)
            + [
                (
                    d["type"],
                    d["name"]
                    + (f", {d['memory_mb']} MiB" if d.get("memory_mb") else "")
                    + (
                        f", compute {d['compute_capability']}"
                        if d.get("compute_capability")
                        else ""
                    ),
                )
                for d in devices
            ]
            + [
                ("GPU in the machine", f"{g['name']}, {g['memory_mb']} MiB")
                for g in worker.get("machine_gpus") or []
            ],
        ),
        ("Smoke test (tiny U-Net)", [(k, v) for k, v in smoke.items()]),
        ("Free disk space", [(k, v) for k, v in disk.items()]),
    ]
    return [(title, rows) for title, rows in sections if rows]


def render_report(report: dict, destination: str) -> str:
    """Write the diagnostics report, HTML when ``destination`` ends in .htm(l), else text.

    Args:
        report: ``qgis`` (label -> value), ``worker_python``, ``worker_python_source``,
            ``worker`` (``worker_facts`` output, or None), ``disk`` (label -> text),
            ``problems`` (what failed and what to do, one text each).
    Returns:
        the destination.
    """
    problems = report.get("problems") or []
    sections = _rows(report)
    as_html = destination.lower().endswith((".html", ".htm"))
    if as_html:
        parts = ["<html><head><meta charset='utf-8'><title>Wetland U-Net diagnostics</title>"]
        parts.append("</head><body><h1>Wetland U-Net diagnostics</h1>")
        status = "Problems found" if problems else "The worker works"
        parts.append(f"<p><b>{html.escape(status)}</b></p>")
        if problems:
            items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
            parts.append(f"<h2>What to do</h2><ul>{items}</ul>")
        for title, rows in sections:
            cells = "".join(
                f"<tr><th align='left'>{html.escape(str(k))}</th>"
                f"<td>{html.escape(str(v))}</td></tr>"
                for k, v in rows
            )
            parts.append(f"<h2>{html.escape(title)}</h2><table>{cells}</table>")
        parts.append("</body></html>")
        text = "\n".join(parts)
    else:
        lines = ["Wetland U-Net diagnostics", "=" * 25, ""]
        if problems:
            lines += ["What to do:"] + [f"- {p}" for p in problems] + [""]
        else:
            lines += ["The worker works.", ""]
        for title, rows in sections:
            lines.append(f"{title}:")
            lines += [f"  {k}: {v}" for k, v in rows]
            lines.append("")
        text = "\n".join(lines)
    with atomic_output(destination) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
    return destination
