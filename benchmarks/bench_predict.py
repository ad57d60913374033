"""Prediction benchmark: naive comparison, pipeline efficiency, precision, worker, memory.

    python benchmarks/bench_predict.py            # full run (FILTERS 32 DEPTH 5 model)
    python benchmarks/bench_predict.py --quick    # small models and scenes, a few minutes

Scene: a Planet-like 4-band uint16 GeoTIFF (nodata 0) whose footprint is a
rectangle rotated by 12 degrees: 2048 x 2048 with 67% valid pixels (the issue's
case). Model: a random-weight U-Net FILTERS 32 DEPTH 5 (the defaults) on 4 bands,
4 classes, training patch 256; speed and memory do not depend on the weights.
The machine may be shared, so every comparison of speed is made side by side in
one process, alternating the contenders, best of N runs, and the load average
is reported with the figures.

1. Speed, side by side in one process, best of N (default 3):
   * ``predict_scene`` end to end at its defaults (TTA 1, batch 4): read,
     validate, normalise, model, blend, write a class GeoTIFF;
   * the naive whole-image predictor in the seed's style (``naive_predict``):
     the whole scene read into RAM, global per-band min-max normalisation in
     float64 over the whole image (nodata included, as numpy does it), padded
     by reflection to a multiple of 256, cut into non-overlapping 256-pixel
     tiles (the model's training patch), ``model.predict`` on each batch of 4
     tiles (as the seed called Keras), a whole-scene float32 probability array,
     argmax, one GeoTIFF written. No nodata handling, no blending (the seed had
     none). It gets the same warm-up as ``predict_scene`` (model loaded, one
     ``predict`` call before timing);
   * the bare compiled model replaying exactly the model calls of the
     ``predict_scene`` run (same batch shapes, random data, no I/O):
     ``bare / end-to-end`` is the pipeline efficiency (target >= 0.9),
     ``end-to-end / naive`` the speed target (<= 0.5).
2. What each change buys (one run each, same process): the previous defaults
   (tile 256, whole tiles, the Keras graph), then tile 512, then tiles cut to
   their valid part, then the folded inference graph (= the defaults).
3. TTA 2 vs TTA 1 (work scales with the valid tiles only: same model pixels,
   twice the model time).
4. Precision: float32 vs mixed_bfloat16, both with float32 probabilities, side
   by side (best of N): speed-up, class agreement on valid pixels, max / mean
   probability difference.
5. Steady state in the worker (what a batch user gets): a ``WorkerClient``
   starts the worker and runs a first small predict job (TensorFlow imported,
   model loaded and traced), then the benchmark scene is timed as the second
   job; memory = VmHWM of the calling process + VmHWM of the worker.
6. Peak RSS (VmHWM) of ``predict_scene`` and of the naive predictor, each in
   its own process, on the benchmark scene; then with a small model on
   1000 x 1000 and 8000 x 8000 scenes (growth target < 400 MB).
7. Near the compute limit (``bench_limit.py``; ``--limit`` runs only this): the
   bare model's throughput on whole tiles and ``end to end / (valid pixels /
   throughput)`` on the benchmark scene for the ``small`` (= ``auto`` on a CPU)
   and ``large`` MODEL_SIZEs, side by side, best of N (target <= 1.3), and how far
   their tiled probabilities are from one whole-scene tile; then an
   8000 x 4000 Planet-sized scene with 30 % nodata mapped with the small model at
   TTA 1, end to end, with its peak RSS, in a fresh process.

Results go to bench_output/bench_predict.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
from bench_limit import print_limit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CRS = "EPSG:32633"
PIXEL = 3.0  # Planet-like 3 m pixels
#: Tile of the naive predictor: the benchmark model's training patch, as the seed used.
NAIVE_TILE = 256
NAIVE_BATCH = 4


# --------------------------------------------------------------------------- data


def footprint(
    rows: np.ndarray,
    cols: np.ndarray,
    height: int,
    width: int,
    angle_deg: float = 12.0,
    half: float = 0.42,
) -> np.ndarray:
    """True inside a rotated rectangle centred in the frame (a Planet-like footprint)."""
    y = (rows[:, None] + 0.5 - height / 2) / height
    x = (cols[None, :] + 0.5 - width / 2) / width
    a = math.radians(angle_deg)
    xr = x * math.cos(a) + y * math.sin(a)
    yr = -x * math.sin(a) + y * math.cos(a)
    return (np.abs(xr) < half) & (np.abs(yr) < half)


def write_planet_like(
    path: str, height: int, width: int, seed: int = 0, block_rows: int = 512, half: float = 0.42
) -> float:
    """Write a 4-band uint16 scene (B, G, R, NIR x 10000, nodata 0) by row blocks; valid
    inside a rectangle rotated by 12 degrees of half-size ``half`` (0.41: 67% valid).

    Returns:
        The nodata fraction.
    """
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    phases = rng.random((4, 3)) * 2 * math.pi
    base = np.array([600, 900, 1100, 2800], np.float32)
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=4,
        dtype="uint16",
        nodata=0,
        crs=CRS,
        transform=from_origin(400000, 5900000, PIXEL, PIXEL),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        bigtiff="IF_SAFER",
    )
    invalid = 0
    cols = np.arange(width)
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, height, block_rows):
            n = min(block_rows, height - row)
            rows = np.arange(row, row + n)
            yy, xx = rows[:, None] / 97.0, cols[None, :] / 113.0
            inside = footprint(rows, cols, height, width, half=half)
            invalid += int((~inside).sum())
            block = np.empty((4, n, width), np.uint16)
            for b in range(4):
                field = np.sin(xx + phases[b, 0]) * np.cos(yy * 1.3 + phases[b, 1]) + 0.5 * np.sin(
                    (xx + yy) * 3.1 + phases[b, 2]
                )
                noise = rng.normal(0, 40, (n, width))
                value = base[b] * (1 + 0.35 * field) + noise
                block[b] = np.clip(value, 1, 10000).astype(np.uint16)
            block[:, ~inside] = 0
            dst.write(block, window=Window(0, row, width, n))
    return invalid / float(height * width)


def make_model(path: str, filters: int, depth: int, patch: int = 256) -> str:
    """Save a random-weight U-Net on 4 bands, 4 classes, with plausible metadata."""
    import keras

    from wetland_unet_plugin.core.modelfile import save_model
    from wetland_unet_plugin.core.unet import build_unet

    keras.utils.set_random_seed(0)
    model = build_unet(4, 4, filters=filters, depth=depth)
    meta = {
        "class_names": ["water", "wetland", "forest", "grass"],
        "class_colors": ["#1f78b4", "#33a5a0", "#1b7837", "#a6d96a"],
        "n_classes": 4,
        "bands": [1, 2, 3, 4],
        "n_input_bands": 4,
        "normalization": {
            "low": [300.0, 500.0, 600.0, 1500.0],
            "high": [900.0, 1300.0, 1600.0, 4000.0],
        },
        "patch_size": patch,
        "filters": filters,
        "depth": depth,
        "activation": "softmax",
        "pixel_size": [PIXEL, PIXEL],
        "crs": CRS,
    }
    save_model(model, meta, path)
    return path


# --------------------------------------------------------------------------- helpers


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set size (VmHWM of /proc/<pid>/status) in MiB.

    ``ru_maxrss`` is reported as well where it applies, but on Linux a child
    started by fork + exec inherits the parent's RSS at fork time in
    ``ru_maxrss``, so it can overstate a child's own peak; ``VmHWM`` belongs to
    the process's own address space.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return ru_maxrss_mb() if pid == "self" else float("nan")


def ru_maxrss_mb() -> float:
    """``ru_maxrss`` of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load() -> list:
    """1, 5 and 15 minute load averages."""
    return [round(v, 2) for v in os.getloadavg()]


def naive_predict(
    model, scene: str, output: str, tile: int = NAIVE_TILE, batch: int = NAIVE_BATCH
) -> dict:
    """The naive whole-image predictor in the seed's style (see the module docstring).

    Args:
        model: a Keras model.
        scene: the input GeoTIFF (all bands are the model's).
        output: class GeoTIFF to write.
    """
    import rasterio

    start = time.perf_counter()
    with rasterio.open(scene) as src:
        image = src.read()
        profile = src.profile
    x = image.astype(np.float64)  # numpy's default: global min-max per band, float64
    del image
    low = x.min(axis=(1, 2), keepdims=True)
    high = x.max(axis=(1, 2), keepdims=True)
    x = np.moveaxis((x - low) / np.where(high > low, high - low, 1.0), 0, -1)
    height, width = x.shape[:2]
    x = np.pad(x, ((0, -height % tile), (0, -width % tile), (0, 0)), mode="reflect")
    n_classes = int(model.outputs[0].shape[-1])
    probs = np.zeros(x.shape[:2] + (n_classes,), np.float32)
    origins = [(r, c) for r in range(0, x.shape[0], tile) for c in range(0, x.shape[1], tile)]
    for i in range(0, len(origins), batch):
        chunk = origins[i : i + batch]
        tiles = np.stack([x[r : r + tile, c : c + tile] for r, c in chunk])
        out = model.predict(tiles, batch_size=batch, verbose=0)
        for (r, c), p in zip(chunk, out):
            probs[r : r + tile, c : c + tile] = p
    classes = (probs[:height, :width].argmax(-1) + 1).astype(np.uint8)
    profile.update(count=1, dtype="uint8", nodata=None, compress="deflate")
    with rasterio.open(output, "w", **profile) as dst:
        dst.write(classes[None])
    return {
        "seconds": time.perf_counter() - start,
        "tiles": len(origins),
        "model_megapixels": len(origins) * tile * tile / 1e6,
    }


def warm_scene(workdir: str) -> str:
    path = os.path.join(workdir, "warm.tif")
    if not os.path.exists(path):
        write_planet_like(path, 300, 300, seed=9)
    return path


class _CallRecorder:
    """Wraps the ``get_predictor`` that ``inference.scene`` calls, to record the shapes
    of the model calls."""

    def __init__(self, scene):
        self.real = scene.get_predictor
        self.calls: list = []
        scene.get_predictor = self

    def __call__(self, *args, **kwargs):
        predictor = self.real(*args, **kwargs)

        def recorded(batch):
            self.calls.append(tuple(int(v) for v in batch.shape[:3]))
            return predictor(batch)

        return recorded


# --------------------------------------------------------------------------- children


def child_speed(args) -> dict:
    """Naive, predict_scene and the bare model side by side, best of N; then the
    ablation, TTA 2 and the precision comparison (all in this one process)."""
    from throughput import bare_model_throughput

    from wetland_unet_plugin.core.inference import scene
    from wetland_unet_plugin.core.inference.cache import get_cached_model

    loaded = get_cached_model(args.model)
    work = args.workdir
    recorder = _CallRecorder(scene)
    warm = warm_scene(work)
    scene.predict_scene(loaded, warm, os.path.join(work, "warm_out.tif"))  # a batch's 2nd scene
    loaded.keras_model.predict(np.zeros((NAIVE_BATCH, NAIVE_TILE, NAIVE_TILE, 4)), verbose=0)

    def e2e(**kwargs):
        """``run_scene``: ``predict_scene`` with the engine switches (crop, fold) as given."""
        recorder.calls = []
        before = load()[0]
        result = scene.run_scene(loaded, args.scene, os.path.join(work, "tiled.tif"), **kwargs)
        result["load_1min"] = before
        return result, list(recorder.calls)

    runs = {"predict_scene": [], "naive": [], "bare": [], "load_1min": []}
    result = calls = naive = None
    for _ in range(args.repeat):
        runs["load_1min"].append(load()[0])
        result, calls = e2e()
        runs["predict_scene"].append(result["seconds"])
        naive = naive_predict(loaded.keras_model, args.scene, os.path.join(work, "naive.tif"))
        runs["naive"].append(naive["seconds"])
        bare = bare_model_throughput(loaded, calls=calls)
        runs["bare"].append(bare["seconds"])
    out = {
        "runs": runs,
        "predict": result,
        "naive": naive,
        "calls": len(calls),
        "call_shapes": sorted({c[1:] for c in calls}),
    }

    # what each change buys
    steps = [
        (
            "previous defaults: tile 256, whole tiles, Keras graph",
            dict(tile_size=256),
            False,
            False,
        ),
        ("tile 512 (overlap 64), whole tiles, Keras graph", {}, False, False),
        ("+ tiles cut to their valid part", {}, True, False),
        ("+ folded inference graph (= the defaults)", {}, True, True),
    ]
    ablation = []
    for label, kwargs, crop, fold in steps:
        kwargs = dict(kwargs, crop=crop, fold=fold)
        if not fold:  # trace and warm the unfolded graph outside the timing
            scene.run_scene(loaded, warm, os.path.join(work, "warm_out.tif"), **kwargs)
        r, _ = e2e(**kwargs)
        ablation.append(
            {
                "step": label,
                "seconds": r["seconds"],
                "tile_size": r["tile_size"],
                "overlap": r["overlap"],
                "tiles_predicted": r["tiles_predicted"],
                "model_megapixels": r["model_megapixels"],
                "load_1min": r["load_1min"],
            }
        )
    out["ablation"] = ablation

    # TTA 2: same tiles, twice the transforms
    scene.predict_scene(loaded, warm, os.path.join(work, "warm_out.tif"), tta=2)
    r, _ = e2e(tta=2)
    out["tta2"] = {
        "seconds": r["seconds"],
        "model_megapixels": r["model_megapixels"],
        "tiles_predicted": r["tiles_predicted"],
        "load_1min": r["load_1min"],
    }

    # precision: float32 vs mixed_bfloat16, float32 probabilities, side by side
    scene.predict_scene(
        loaded, warm, os.path.join(work, "warm_out.tif"), precision="mixed_bfloat16"
    )
    times = {"float32": [], "mixed_bfloat16": []}
    for _ in range(args.repeat_precision):
        for precision in times:
            r = scene.predict_scene(
                loaded,
                args.scene,
                os.path.join(work, f"c_{precision}.tif"),
                os.path.join(work, f"p_{precision}.tif"),
                probability_dtype="float32",
                precision=precision,
            )
            times[precision].append(r["seconds"])
    import rasterio

    with (
        rasterio.open(os.path.join(work, "p_float32.tif")) as a,
        rasterio.open(os.path.join(work, "p_mixed_bfloat16.tif")) as b,
    ):
        pa, pb = a.read(), b.read()
    valid = pa[0] != -1.0
    diff = np.abs(pa[:, valid] - pb[:, valid])
    agree = (pa[:, valid].argmax(0) == pb[:, valid].argmax(0)).mean()
    out["precision"] = {
        "runs": times,
        "class_agreement": float(agree),
        "max_probability_difference": float(diff.max()),
        "mean_probability_difference": float(diff.mean()),
    }
    return out


def child_rss(args) -> dict:
    """Peak memory of one run (predict_scene or naive) in a fresh process."""
    from wetland_unet_plugin.core.inference import get_cached_model, predict_scene

    loaded = get_cached_model(args.model)
    if args.naive:
        loaded.keras_model.predict(np.zeros((NAIVE_BATCH, NAIVE_TILE, NAIVE_TILE, 4)), verbose=0)
        before = peak_rss_mb()
        result = naive_predict(
            loaded.keras_model, args.scene, os.path.join(args.workdir, "naive_rss.tif")
        )
    else:
        predict_scene(loaded, warm_scene(args.workdir), os.path.join(args.workdir, "warm_out.tif"))
        before = peak_rss_mb()
        result = predict_scene(loaded, args.scene, os.path.join(args.workdir, "rss.tif"))
    return {
        "peak_rss_mb": peak_rss_mb(),
        "ru_maxrss_mb": ru_maxrss_mb(),
        "rss_before_mb": before,
        "seconds": result["seconds"],
        "result": result,
    }


def child_worker(args) -> dict:
    """Second job through the worker; caller + worker memory. No TensorFlow here."""
    from wetland_unet_plugin.processing.worker_client import WorkerClient

    client = WorkerClient()
    try:
        start = time.perf_counter()
        client.run(
            "predict",
            {
                "model": args.model,
                "input": warm_scene(args.workdir),
                "output": os.path.join(args.workdir, "worker_warm.tif"),
            },
        )
        first = time.perf_counter() - start
        before = load()[0]
        start = time.perf_counter()
        result = client.run(
            "predict",
            {
                "model": args.model,
                "input": args.scene,
                "output": os.path.join(args.workdir, "worker.tif"),
            },
        )
        second = time.perf_counter() - start
        worker_hwm = peak_rss_mb(client.pid)
    finally:
        client.stop()
    caller = peak_rss_mb()
    return {
        "first_job_seconds": first,
        "second_job_seconds": second,
        "second_job_core_seconds": result["seconds"],
        "caller_peak_rss_mb": caller,
        "worker_peak_rss_mb": worker_hwm,
        "total_peak_rss_mb": caller + worker_hwm,
        "load_1min": before,
    }


def child_models(args) -> dict:
    """Write the benchmark models (in a child, so the parent never imports TensorFlow)."""
    spec = json.loads(args.model)
    for path, (filters, depth, *patch) in spec.items():
        make_model(path, filters, depth, *patch)
    return {"models": list(spec)}


def child_limit(args) -> dict:
    """Section 7 for one model: whole-tile throughput and the end-to-end ratio."""
    from bench_limit import SEAM_OTHER, limit_ratio, seam_check

    from wetland_unet_plugin.core.inference import scene
    from wetland_unet_plugin.core.inference.cache import get_cached_model

    loaded = get_cached_model(args.model)
    recorder = _CallRecorder(scene)
    scene.predict_scene(loaded, warm_scene(args.workdir), os.path.join(args.workdir, "w.tif"))
    other = SEAM_OTHER[args.seams] if args.seams == "small" else None
    out = limit_ratio(loaded, args.scene, args.workdir, args.repeat, recorder, load, other)
    if args.seams:
        out["seams"] = seam_check(loaded, args.scene, args.workdir, SEAM_OTHER[args.seams])
    return out


def child_planet(args) -> dict:
    """Section 7's Planet-sized scene, in a fresh process (its peak RSS is this one's)."""
    from bench_limit import planet_run

    from wetland_unet_plugin.core.inference import get_cached_model, predict_scene

    loaded = get_cached_model(args.model)
    predict_scene(loaded, warm_scene(args.workdir), os.path.join(args.workdir, "w.tif"))
    return planet_run(loaded, args.scene, args.workdir, peak_rss_mb, load, args.repeat or 3)


def run_limit(work: str, scene: str, scene_size, nodata: float, repeat: int, quick: bool) -> dict:
    """Section 7 (see the module docstring): one child per model, then the Planet scene."""
    from bench_limit import LIMIT_MODELS, PLANET_SIZE, footprint_half_for

    names = ["small"] if quick else list(LIMIT_MODELS)
    paths = {name: os.path.join(work, f"limit_{name}.keras") for name in names}
    run_child("models", model=json.dumps({paths[n]: LIMIT_MODELS[n] for n in names}))
    out = {
        "scene": f"{scene_size[1]} x {scene_size[0]}, {nodata:.0%} nodata",
        "repeat": repeat,
        "load_at_start": load(),
        "models": {},
    }
    for name in names:
        print(f"near the compute limit: {name} model ...", file=sys.stderr)
        out["models"][name] = run_child(
            "limit",
            model=paths[name],
            scene=scene,
            workdir=work,
            repeat=repeat,
            seams=name,
        )
    size = (1000, 2000) if quick else PLANET_SIZE
    print(f"Planet-sized scene {size[1]} x {size[0]} ...", file=sys.stderr)
    planet = os.path.join(work, "planet_sized.tif")
    fraction = write_planet_like(planet, *size, seed=3, half=footprint_half_for(0.3))
    result = run_child("planet", model=paths["small"], scene=planet, workdir=work, repeat=repeat)
    out["planet"] = dict(result, scene=f"{size[1]} x {size[0]}", nodata_fraction=fraction)
    os.remove(planet)
    out["load_at_end"] = load()
    return out


def run_child(mode: str, **kwargs) -> dict:
    """Run this script as a child in ``mode``; return its JSON result."""
    command = [sys.executable, os.path.abspath(__file__), "--child", mode]
    for key, value in kwargs.items():
        if value is True:
            command.append(f"--{key}")
        elif value not in (None, False):
            command += [f"--{key}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"child {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small models and scenes")
    parser.add_argument("--output", default=os.path.join(ROOT, "bench_output"))
    parser.add_argument(
        "--repeat", type=int, default=0, help="runs to take the best of (default 3, quick 2)"
    )
    parser.add_argument(
        "--limit", action="store_true", help="only section 7, near the compute limit"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--naive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seams", help=argparse.SUPPRESS)
    parser.add_argument("--repeat-precision", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = {
            "speed": child_speed,
            "rss": child_rss,
            "worker": child_worker,
            "models": child_models,
            "limit": child_limit,
            "planet": child_planet,
        }[args.child](args)
        print(json.dumps(result, default=str))
        return 0

    quick = args.quick
    repeat = args.repeat or (2 if quick else 3)
    work = os.path.join(args.output, "bench_predict_work")
    os.makedirs(work, exist_ok=True)
    big_filters, big_depth = (8, 3) if quick else (32, 5)
    small_filters, small_depth = (4, 2) if quick else (8, 3)
    scene_size = (700, 600) if quick else (2048, 2048)
    rss_sizes = (1000, 3000) if quick else (1000, 8000)

    report = {
        "quick": quick,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "node": platform.node(),
        },
        "load_at_start": load(),
    }
    t0 = time.perf_counter()
    if args.limit:  # section 7 alone, on the 2048 x 2048 scene
        scene = os.path.join(work, "planet_like_2048.tif")
        fraction = write_planet_like(scene, 2048, 2048, seed=1, half=0.41)
        report["limit"] = run_limit(work, scene, (2048, 2048), fraction, repeat, quick)
        report["bench_seconds"] = time.perf_counter() - t0
        path = os.path.join(args.output, "bench_predict_limit.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1)
        print_limit(report)
        print(f"\nwritten {path}")
        return 0
    print("writing scenes and models ...", file=sys.stderr)
    big_model = os.path.join(work, f"unet_f{big_filters}_d{big_depth}.keras")
    small_model = os.path.join(work, f"unet_f{small_filters}_d{small_depth}.keras")
    run_child(
        "models",
        model=json.dumps(
            {big_model: [big_filters, big_depth], small_model: [small_filters, small_depth]}
        ),
    )
    scene = os.path.join(work, "planet_like.tif")
    nodata_fraction = write_planet_like(scene, *scene_size, seed=1, half=0.41)
    report["scene"] = {
        "height": scene_size[0],
        "width": scene_size[1],
        "bands": 4,
        "nodata_fraction": round(nodata_fraction, 3),
        "model": f"U-Net FILTERS {big_filters} DEPTH {big_depth}",
    }

    print("speed: predict_scene vs naive vs bare model, side by side ...", file=sys.stderr)
    speed = run_child(
        "speed",
        model=big_model,
        scene=scene,
        workdir=work,
        repeat=repeat,
        **{"repeat-precision": 2},
    )
    pred, runs = speed["predict"], speed["runs"]
    valid = pred["valid_pixels"]
    best = {key: min(runs[key]) for key in ("predict_scene", "naive", "bare")}
    report["speed"] = {
        "runs": repeat,
        "runs_s": runs,
        "best_s": best,
        "tile_size": pred["tile_size"],
        "overlap": pred["overlap"],
        "batch_size": 4,
        "tiles_total": pred["tiles_total"],
        "tiles_predicted": pred["tiles_predicted"],
        "tiles_skipped": pred["tiles_skipped"],
        "model_calls": speed["calls"],
        "call_shapes": speed["call_shapes"],
        "valid_pixels": valid,
        "model_megapixels": pred["model_megapixels"],
        "naive_tiles": speed["naive"]["tiles"],
        "naive_model_megapixels": speed["naive"]["model_megapixels"],
        "valid_mpx_per_s": {key: valid / 1e6 / best[key] for key in best},
        "end_to_end_over_naive": best["predict_scene"] / best["naive"],
        "pipeline_efficiency": best["bare"] / best["predict_scene"],
    }
    report["ablation"] = speed["ablation"]
    report["tta"] = {
        "tta1_seconds": best["predict_scene"],
        "tta1_model_megapixels": pred["model_megapixels"],
        "tta2_seconds": speed["tta2"]["seconds"],
        "tta2_model_megapixels": speed["tta2"]["model_megapixels"],
        "tta2_over_tta1": speed["tta2"]["seconds"] / best["predict_scene"],
    }
    prec = speed["precision"]
    report["precision"] = dict(
        prec,
        best_s={k: min(v) for k, v in prec["runs"].items()},
        bfloat16_speedup=min(prec["runs"]["float32"]) / min(prec["runs"]["mixed_bfloat16"]),
    )

    print("steady state in the worker ...", file=sys.stderr)
    report["worker"] = run_child("worker", model=big_model, scene=scene, workdir=work)

    print("peak RSS: predict_scene and naive, each in its own process ...", file=sys.stderr)
    tiled_rss = run_child("rss", model=big_model, scene=scene, workdir=work)
    naive_rss = run_child("rss", model=big_model, scene=scene, workdir=work, naive=True)
    report["peak_rss"] = {
        key: {k: value[k] for k in ("peak_rss_mb", "ru_maxrss_mb", "rss_before_mb", "seconds")}
        for key, value in (("predict_scene", tiled_rss), ("naive", naive_rss))
    }

    scaling = {}
    for size in rss_sizes:
        print(f"peak RSS on {size} x {size} ...", file=sys.stderr)
        path = os.path.join(work, f"scene_{size}.tif")
        write_planet_like(path, size, size, seed=2)
        tiled = run_child("rss", model=small_model, scene=path, workdir=work)
        plain = run_child("rss", model=small_model, scene=path, workdir=work, naive=True)
        scaling[str(size)] = {
            "peak_rss_mb": tiled["peak_rss_mb"],
            "rss_before_mb": tiled["rss_before_mb"],
            "seconds": tiled["seconds"],
            "valid_mpx_per_s": tiled["result"]["megapixels_per_second"],
            "naive_peak_rss_mb": plain["peak_rss_mb"],
            "naive_seconds": plain["seconds"],
        }
        os.remove(path)
    a, b = (str(s) for s in rss_sizes)
    report["memory_scaling"] = {
        "model": f"U-Net FILTERS {small_filters} DEPTH {small_depth}",
        "scenes": scaling,
        "peak_rss_growth_mb": scaling[b]["peak_rss_mb"] - scaling[a]["peak_rss_mb"],
        "naive_peak_rss_growth_mb": scaling[b]["naive_peak_rss_mb"]
        - scaling[a]["naive_peak_rss_mb"],
    }
    report["limit"] = run_limit(work, scene, scene_size, nodata_fraction, repeat, quick)
    report["load_at_end"] = load()
    report["bench_seconds"] = time.perf_counter() - t0

    path = os.path.join(args.output, "bench_predict.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    print_table(report)
    print_limit(report)
    print(f"\nwritten {path}")
    return 0


def print_table(report: dict) -> None:
    """Print the results as small tables."""
    s, p = report["scene"], report["speed"]
    rss = report["peak_rss"]
    print(
        f"\nPlanet-like scene {s['width']} x {s['height']} x 4, nodata "
        f"{s['nodata_fraction']:.0%}; {s['model']}; load average at start "
        f"{report['load_at_start']}, at end {report['load_at_end']} "
        f"({report['machine']['cpus']} CPUs)"
    )
    print(
        f"predict_scene: tile {p['tile_size']} overlap {p['overlap']} batch 4, "
        f"{p['tiles_predicted']} of {p['tiles_total']} tiles predicted "
        f"({p['tiles_skipped']} skipped), {p['model_calls']} model calls, "
        f"{p['model_megapixels']:.2f} Mpx through the model; naive: {p['naive_tiles']} "
        f"tiles of {NAIVE_TILE}, {p['naive_model_megapixels']:.2f} Mpx"
    )
    print(
        f"\n{'best of ' + str(p['runs']) + ', side by side':40}{'seconds':>9}"
        f"{'valid Mpx/s':>13}{'peak RSS MB':>13}"
    )
    rows = (
        ("naive whole-image (seed style)", "naive", rss["naive"]["peak_rss_mb"]),
        ("predict_scene end to end", "predict_scene", rss["predict_scene"]["peak_rss_mb"]),
        ("bare model, same calls", "bare", None),
    )
    for label, key, mem in rows:
        mem_text = f"{mem:>13.0f}" if mem is not None else f"{'':>13}"
        print(f"{label:40}{p['best_s'][key]:>9.2f}{p['valid_mpx_per_s'][key]:>13.3f}{mem_text}")
    print(f"{'end to end / naive (target <= 0.5)':40}{p['end_to_end_over_naive']:>9.2f}")
    print(f"{'pipeline efficiency bare / e2e (>= 0.9)':40}{p['pipeline_efficiency']:>9.2f}")
    print(
        f"\n{'what each change buys (one run each)':56}{'seconds':>9}{'tiles':>7}{'model Mpx':>11}"
    )
    for row in report["ablation"]:
        print(
            f"{row['step']:56}{row['seconds']:>9.2f}{row['tiles_predicted']:>7}"
            f"{row['model_megapixels']:>11.2f}"
        )
    t = report["tta"]
    print(
        f"\nTTA 2 / TTA 1: {t['tta2_over_tta1']:.2f} x the time "
        f"({t['tta2_seconds']:.2f} s vs {t['tta1_seconds']:.2f} s), model pixels "
        f"{t['tta2_model_megapixels']:.2f} vs {t['tta1_model_megapixels']:.2f} Mpx "
        "per transform (skipped and cut tiles stay so for every transform)"
    )
    q = report["precision"]
    print(
        f"precision, best of {len(q['runs']['float32'])} side by side: float32 "
        f"{q['best_s']['float32']:.2f} s, mixed_bfloat16 {q['best_s']['mixed_bfloat16']:.2f} s"
        f" (speed-up {q['bfloat16_speedup']:.2f}); class agreement "
        f"{q['class_agreement']:.2%}, probability difference max "
        f"{q['max_probability_difference']:.3f} mean {q['mean_probability_difference']:.4f}"
    )
    w = report["worker"]
    print(
        f"worker steady state: second job {w['second_job_seconds']:.2f} s "
        f"(first, with start-up: {w['first_job_seconds']:.2f} s); peak RSS caller "
        f"{w['caller_peak_rss_mb']:.0f} MB + worker {w['worker_peak_rss_mb']:.0f} MB = "
        f"{w['total_peak_rss_mb']:.0f} MB"
    )
    m = report["memory_scaling"]
    print(f"\npeak RSS (MB), {m['model']}")
    print(f"{'':18}{'predict_scene s':>16}{'peak RSS':>10}{'naive s':>10}{'naive RSS':>11}")
    for size, row in m["scenes"].items():
        print(
            f"{size + ' x ' + size:18}{row['seconds']:>16.2f}{row['peak_rss_mb']:>10.0f}"
            f"{row['naive_seconds']:>10.2f}{row['naive_peak_rss_mb']:>11.0f}"
        )
    print(
        f"{'growth (< 400)':18}{'':>16}{m['peak_rss_growth_mb']:>10.0f}{'':>10}"
        f"{m['naive_peak_rss_growth_mb']:>11.0f}"
    )


if __name__ == "__main__":
    sys.exit(main())
