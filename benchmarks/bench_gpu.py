"""GPU benchmark: model throughput per precision, a Planet-sized scene end to end, training.

    KERAS_BACKEND=jax python benchmarks/bench_gpu.py            # on a GPU machine
    KERAS_BACKEND=jax python benchmarks/bench_gpu.py --quick    # small, runs on a CPU too

Runs under any Keras 3 backend; the lent GPU machine of the development team has
JAX and PyTorch but no TensorFlow (its wheels are larger than what can be carried
there), so it is run there with ``KERAS_BACKEND=jax``. The model is the same
``.keras`` file ``wetlandunet:train`` writes (a random-weight U-Net FILTERS 32
DEPTH 5 on 4 bands, 4 classes: speed does not depend on the weights) and the
scene predictor is the core's ``predict_scene`` (reader thread, model, blending
writer thread), which under JAX runs each TTA pass as one XLA program
(``inference.predictors.portable_predictor``).

1. Bare model throughput per precision (float32, mixed_float16, mixed_bfloat16):
   batches of 512 x 512 tiles of random data, after a warm-up call, Mpx/s per pass;
   at TTA 1 (host-device copies included) and at TTA 8 (eight passes per copy:
   the arithmetic rate).
2. A Planet-sized scene (8000 x 4000, 4-band uint16, nodata 0 outside a
   footprint rotated by 12 degrees, about 30 % nodata) end to end with
   ``predict_scene`` at TTA 1 per precision: the second of two runs (the first
   compiles); the scene is read from the page cache (written just before), and
   the time to read it alone is reported so it can be subtracted.
3. TTA 8 on the same scene at the fastest precision.
4. Agreement of each mixed precision with float32 on a 2000 x 2000 scene of the
   same kind: class agreement on valid pixels, mean and max probability
   difference (probabilities written as float32).
5. Training throughput: ``model.fit`` steps on in-memory 256 x 256 patches with the
   training loss and optimizer of ``train.compile_model``, float32 vs
   mixed_float16 (what ``train`` uses on a GPU), patches/s after a warm-up epoch.

Results go to <output>/bench_gpu.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "benchmarks")):
    if path not in sys.path:
        sys.path.insert(0, path)

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def environment() -> dict:
    """Backend, devices and versions."""
    import keras

    info = {
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    if info["backend"] == "jax":
        import jax

        info["jax"] = jax.__version__
        info["devices"] = [str(d) for d in jax.devices()]
        info["device_kind"] = jax.devices()[0].device_kind
        info["jax_default_matmul_precision"] = str(jax.config.jax_default_matmul_precision)
    elif info["backend"] == "torch":
        import torch

        info["torch"] = torch.__version__
        info["devices"] = [torch.cuda.get_device_name(0)] if torch.cuda.is_available() else ["cpu"]
    else:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["devices"] = [d.name for d in tf.config.list_logical_devices()]
    return info


def bare(model_path: str, precision: str, n_tiles: int, batch: int, tta: int = 1) -> dict:
    """Model alone on random 512 x 512 tiles (``bare_model_throughput``), best of 2.

    At TTA 1 each call also copies its tiles to the device and the probabilities
    back; at TTA 8 the eight passes run on the device between the two copies, so
    Mpx/s per pass is close to the model's arithmetic rate.
    """
    from throughput import bare_model_throughput

    best = None
    for _ in range(2):
        result = bare_model_throughput(
            model_path,
            n_tiles=n_tiles,
            tile_size=512,
            batch_size=batch,
            tta=tta,
            precision=precision,
        )
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    return {
        "precision": precision,
        "tta": tta,
        "tiles": best["tiles"],
        "batch": batch,
        "megapixels": round(best["megapixels"], 2),
        "seconds": round(best["seconds"], 4),
        "mpx_per_s": round(best["tile_megapixels_per_second"] * tta, 2),
    }


def read_only_seconds(scene: str) -> float:
    """Time to read every band of the scene by 512-row strips (the page-cache read cost)."""
    import rasterio
    from rasterio.windows import Window

    start = time.perf_counter()
    with rasterio.open(scene) as src:
        for row in range(0, src.height, 512):
            src.read(window=Window(0, row, src.width, min(512, src.height - row)))
    return time.perf_counter() - start


def scene_run(
    model_path: str,
    scene: str,
    out: str,
    precision: str,
    tta: int,
    batch: int,
    probabilities: str | None = None,
) -> dict:
    """``predict_scene`` twice (the first compiles); figures of the second."""
    from wetland_unet_plugin.core.inference import predict_scene

    times = []
    for _ in range(2):
        for path in (out, probabilities):
            if path and os.path.exists(path):
                os.remove(path)
        result = predict_scene(
            model_path,
            scene,
            out,
            output_probabilities=probabilities,
            tta=tta,
            batch_size=batch,
            precision=precision,
            probability_dtype="float32",
        )
        times.append(result["seconds"])
    return {
        "precision": precision,
        "tta": tta,
        "batch": batch,
        "first_seconds": round(times[0], 3),
        "seconds": round(times[1], 3),
        "valid_megapixels": round(result["valid_pixels"] / 1e6, 2),
        "model_megapixels_per_pass": result["model_megapixels"],
        "valid_mpx_per_s": round(result["valid_pixels"] / 1e6 / times[1], 2),
        "model_mpx_per_s_per_pass": round(result["model_megapixels"] * tta / times[1], 2),
    }


def agreement(reference: tuple, other: tuple) -> dict:
    """Class agreement on valid pixels and probability difference between two runs."""
    import rasterio

    with rasterio.open(reference[0]) as a, rasterio.open(other[0]) as b:
        ca, cb = a.read(1), b.read(1)
    valid = ca > 0
    with rasterio.open(reference[1]) as a, rasterio.open(other[1]) as b:
        diff = np.zeros(ca.shape, np.float32)
        for band in range(1, a.count + 1):
            diff = np.maximum(diff, np.abs(a.read(band) - b.read(band)))
    return {
        "class_agreement": round(float((ca[valid] == cb[valid]).mean()), 5),
        "max_probability_difference": round(float(diff[valid].max()), 5),
        "mean_probability_difference": round(float(diff[valid].mean()), 6),
    }


def training(filters: int, depth: int, precision: str, batch: int, steps: int, patch: int) -> dict:
    """``model.fit`` throughput on in-memory patches with the training loss and optimizer."""
    import keras

    from wetland_unet_plugin.core.training.keras_parts import compile_model
    from wetland_unet_plugin.core.unet import build_unet

    keras.config.set_dtype_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        model = compile_model(build_unet(4, 4, filters=filters, depth=depth), "categorical", 1e-3)
        rng = np.random.default_rng(0)
        x = rng.random((batch * steps, patch, patch, 4), dtype=np.float32)
        y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (batch * steps, patch, patch))]
        model.fit(x[: batch * 2], y[: batch * 2], batch_size=batch, epochs=1, verbose=0)
        start = time.perf_counter()
        history = model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
    finally:
        keras.config.set_dtype_policy("float32")
    return {
        "precision": precision,
        "patch": patch,
        "batch": batch,
        "steps": steps,
        "seconds": round(seconds, 3),
        "patches_per_s": round(batch * steps / seconds, 1),
        "loss_finite": bool(np.isfinite(history.history["loss"][-1])),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small model and scene")
    parser.add_argument("--output", default=os.path.join(ROOT, "bench_output"))
    parser.add_argument("--workdir", default=None, help="where the scene and maps go")
    parser.add_argument("--batch", type=int, default=16, help="tiles per model call")
    args = parser.parse_args(argv)

    from bench_predict import make_model, write_planet_like

    if args.quick:
        filters, depth, height, width, tiles, steps, patch = 8, 3, 1024, 2048, 8, 4, 64
    else:
        filters, depth, height, width, tiles, steps, patch = 32, 5, 4000, 8000, 128, 20, 256
    os.makedirs(args.output, exist_ok=True)
    work = args.workdir or args.output
    os.makedirs(work, exist_ok=True)
    report = {"environment": environment(), "filters": filters, "depth": depth, "errors": {}}
    print(json.dumps(report["environment"]), flush=True)
    json_path = os.path.join(args.output, "bench_gpu.json")

    def section(name, fn):
        """Run one part; a failure is recorded and the other parts still run."""
        try:
            report[name] = fn()
        except Exception as err:  # a benchmark part that fails must not hide the others
            import traceback

            report["errors"][name] = f"{type(err).__name__}: {err}"
            traceback.print_exc()
        print(time.strftime("%H:%M:%S"), name, json.dumps(report.get(name)), flush=True)
        with open(json_path, "w") as handle:
            json.dump(report, handle, indent=2)

    model = make_model(os.path.join(work, "gpu_model.keras"), filters, depth)
    scene = os.path.join(work, "gpu_scene.tif")
    small = os.path.join(work, "gpu_small.tif")
    nodata = write_planet_like(scene, height, width, half=0.42)
    write_planet_like(small, height // 2, width // 4, half=0.42)
    report["scene"] = {"height": height, "width": width, "nodata_fraction": round(nodata, 3)}

    section("bare", lambda: [bare(model, p, tiles, args.batch) for p in PRECISIONS])
    section(
        "bare_tta8", lambda: [bare(model, p, tiles // 2, 2 * args.batch, tta=8) for p in PRECISIONS]
    )
    section("read_only_seconds", lambda: round(read_only_seconds(scene), 3))

    def scenes():
        runs = [
            scene_run(model, scene, os.path.join(work, f"class_{p}.tif"), p, 1, args.batch)
            for p in PRECISIONS
        ]
        fastest = min(runs, key=lambda r: r["seconds"])["precision"]
        runs.append(
            scene_run(model, scene, os.path.join(work, "class_tta8.tif"), fastest, 8, args.batch)
        )
        return runs

    section("scene_runs", scenes)

    def agreements():
        from wetland_unet_plugin.core.inference import predict_scene

        runs = {}
        for precision in PRECISIONS:
            out = os.path.join(work, f"agree_{precision}.tif")
            probs = os.path.join(work, f"agree_{precision}_p.tif")
            predict_scene(
                model,
                small,
                out,
                output_probabilities=probs,
                batch_size=args.batch,
                precision=precision,
                probability_dtype="float32",
            )
            runs[precision] = (out, probs)
        return {p: agreement(runs["float32"], runs[p]) for p in PRECISIONS[1:]}

    section("agreement", agreements)
    section(
        "training",
        lambda: [training(filters, depth, p, args.batch, steps, patch) for p in PRECISIONS[:2]],
    )
    print_table(report)
    return 0


def print_table(report: dict) -> None:
    """Print the figures as markdown tables (parts that failed are left out)."""
    env = report["environment"]
    for name, error in report["errors"].items():
        print(f"{name} FAILED: {error}")
    print(
        f"\nGPU benchmark: Keras {env['keras']} ({env['backend']}), "
        f"{env.get('device_kind', env.get('devices'))}; U-Net FILTERS {report['filters']} "
        f"DEPTH {report['depth']}"
    )
    print("| bare model, 512 px tiles | Mpx/s per pass |")
    print("|---|---:|")
    for row in (report.get("bare") or []) + (report.get("bare_tta8") or []):
        print(
            f"| {row['precision']}, TTA {row.get('tta', 1)} (batch {row['batch']}) | "
            f"{row['mpx_per_s']} |"
        )
    scene = report["scene"]
    print(
        f"\n| {scene['width']} x {scene['height']} scene, {scene['nodata_fraction']:.0%} "
        f"nodata | s (warm) | valid Mpx/s | model Mpx/s per pass |"
    )
    print("|---|---:|---:|---:|")
    for row in report.get("scene_runs") or []:
        print(
            f"| {row['precision']}, TTA {row['tta']} | {row['seconds']} | "
            f"{row['valid_mpx_per_s']} | {row['model_mpx_per_s_per_pass']} |"
        )
    print(f"reading the scene alone: {report.get('read_only_seconds')} s")
    for precision, row in (report.get("agreement") or {}).items():
        print(
            f"{precision} vs float32: class agreement {row['class_agreement']:.4%}, "
            f"probability difference mean {row['mean_probability_difference']} "
            f"max {row['max_probability_difference']}"
        )
    print("\n| training, model.fit | patches/s |")
    print("|---|---:|")
    for row in report.get("training") or []:
        print(
            f"| {row['precision']} ({row['patch']} px, batch {row['batch']}) | "
            f"{row['patches_per_s']} |"
        )


if __name__ == "__main__":
    sys.exit(main())
