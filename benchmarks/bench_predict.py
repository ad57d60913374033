"""Prediction benchmark: pipeline overhead, naive comparison and memory scaling.

    python benchmarks/bench_predict.py            # full run (FILTERS 32 DEPTH 5 model)
    python benchmarks/bench_predict.py --quick    # small models and scenes, a minute or so

In one run it reports

1. throughput: the bare compiled model on ``tiles_predicted`` random tiles vs
   ``predict_scene`` end to end (read, validate, normalise, blend, write) on a
   Planet-like 4-band scene whose rotated footprint leaves ~30% nodata; both
   in valid megapixels per second (valid pixels / seconds) and their ratio
   (target >= 0.9: the pipeline hides its I/O behind the model);
2. wall time and peak RSS of ``predict_scene`` vs a naive whole-image predictor
   (whole scene in RAM, non-overlapping mirror-padded tiles, batch 4,
   ``predict_on_batch``) on the same scene and model;
3. peak RSS of ``predict_scene`` on 1000 x 1000 and 8000 x 8000 scenes with a
   small model (each in its own subprocess, ``ru_maxrss``).

Random weights are fine: speed and memory do not depend on them. Results go
to bench_output/bench_predict.json and a table on stdout.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CRS = "EPSG:32633"
PIXEL = 3.0  # Planet-like 3 m pixels


# --------------------------------------------------------------------------- data

def footprint(rows: np.ndarray, cols: np.ndarray, height: int, width: int,
              angle_deg: float = 12.0, half: float = 0.42) -> np.ndarray:
    """True inside a rotated rectangle centred in the frame (a Planet-like footprint)."""
    y = (rows[:, None] + 0.5 - height / 2) / height
    x = (cols[None, :] + 0.5 - width / 2) / width
    a = math.radians(angle_deg)
    xr = x * math.cos(a) + y * math.sin(a)
    yr = -x * math.sin(a) + y * math.cos(a)
    return (np.abs(xr) < half) & (np.abs(yr) < half)


def write_planet_like(path: str, height: int, width: int, seed: int = 0,
                      block_rows: int = 512) -> float:
    """Write a 4-band uint16 scene (B, G, R, NIR x 10000, nodata 0) by row blocks.

    Returns:
        The nodata fraction.
    """
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    phases = rng.random((4, 3)) * 2 * math.pi
    base = np.array([600, 900, 1100, 2800], np.float32)
    profile = dict(driver="GTiff", width=width, height=height, count=4, dtype="uint16",
                   nodata=0, crs=CRS, transform=from_origin(400000, 5900000, PIXEL, PIXEL),
                   tiled=True, blockxsize=256, blockysize=256, bigtiff="IF_SAFER")
    invalid = 0
    cols = np.arange(width)
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, height, block_rows):
            n = min(block_rows, height - row)
            rows = np.arange(row, row + n)
            yy, xx = rows[:, None] / 97.0, cols[None, :] / 113.0
            inside = footprint(rows, cols, height, width)
            invalid += int((~inside).sum())
            block = np.empty((4, n, width), np.uint16)
            for b in range(4):
                field = (np.sin(xx + phases[b, 0]) * np.cos(yy * 1.3 + phases[b, 1])
                         + 0.5 * np.sin((xx + yy) * 3.1 + phases[b, 2]))
                noise = rng.normal(0, 40, (n, width))
                value = base[b] * (1 + 0.35 * field) + noise
                block[b] = np.clip(value, 1, 10000).astype(np.uint16)
            block[:, ~inside] = 0
            dst.write(block, window=Window(0, row, width, n))
    return invalid / float(height * width)


def make_model(path: str, filters: int, depth: int, patch: int = 256) -> str:
    """Save a random-weight U-Net on 4 bands, 4 classes, with plausible metadata."""
    from wetland_unet_plugin.core.modelfile import save_model
    from wetland_unet_plugin.core.unet import build_unet

    import keras

    keras.utils.set_random_seed(0)
    model = build_unet(4, 4, filters=filters, depth=depth)
    meta = {
        "class_names": ["water", "wetland", "forest", "grass"],
        "class_colors": ["#1f78b4", "#33a5a0", "#1b7837", "#a6d96a"],
        "n_classes": 4, "bands": [1, 2, 3, 4], "n_input_bands": 4,
        "normalization": {"low": [300.0, 500.0, 600.0, 1500.0],
                          "high": [900.0, 1300.0, 1600.0, 4000.0]},
        "patch_size": patch, "filters": filters, "depth": depth, "activation": "softmax",
        "pixel_size": [PIXEL, PIXEL], "crs": CRS,
    }
    save_model(model, meta, path)
    return path


# --------------------------------------------------------------------------- children

def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux: ``VmHWM`` of /proc/self/status. ``ru_maxrss`` is reported as well
    (``ru_maxrss_mb``) but on Linux a child started by fork + exec inherits the
    parent's RSS at fork time in ``ru_maxrss``, so it can overstate a child's own
    peak; ``VmHWM`` belongs to the child's own address space.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return ru_maxrss_mb()


def ru_maxrss_mb() -> float:
    """``ru_maxrss`` of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_tiled(args) -> dict:
    """predict_scene end to end, then the bare model on as many tiles."""
    from wetland_unet_plugin.core import predict as P

    loaded = P.get_cached_model(args.model)
    warm = os.path.join(args.workdir, "warm.tif")
    if not os.path.exists(warm):
        write_planet_like(warm, 300, 300, seed=9)
    P.predict_scene(loaded, warm, os.path.join(args.workdir, "warm_out.tif"),
                    batch_size=args.batch)  # tracing / allocation, as a batch's first scene
    before = peak_rss_mb()
    result = P.predict_scene(loaded, args.scene, os.path.join(args.workdir, "tiled.tif"),
                             batch_size=args.batch, tile_size=args.tile or None)
    out = {"peak_rss_mb": peak_rss_mb(), "ru_maxrss_mb": ru_maxrss_mb(),
           "rss_before_mb": before, "predict": result}
    if args.bare:
        # alternate end-to-end and bare runs; the best of each resists other load
        runs, bares = [result["seconds"]], []
        for repeat in range(args.repeat):
            bares.append(P.bare_model_throughput(loaded, result["tiles_predicted"],
                                                 tile_size=result["tile_size"],
                                                 batch_size=args.batch)["seconds"])
            if repeat + 1 < args.repeat:
                again = P.predict_scene(loaded, args.scene,
                                        os.path.join(args.workdir, "tiled.tif"),
                                        batch_size=args.batch, tile_size=args.tile or None)
                runs.append(again["seconds"])
        out["end_to_end_runs"] = runs
        out["bare_runs"] = bares
    return out


def child_naive(args) -> dict:
    """Whole scene in RAM, non-overlapping mirror-padded tiles, batch 4, predict_on_batch."""
    import rasterio

    from wetland_unet_plugin.core import predict as P
    from wetland_unet_plugin.core.normalize import normalize

    loaded = P.get_cached_model(args.model)
    meta = loaded.metadata
    tile = args.tile or P.default_tile_size(meta["patch_size"], meta["depth"])
    model = loaded.keras_model
    model.predict_on_batch(np.zeros((args.batch, tile, tile, 4), np.float32))  # warm-up
    before = peak_rss_mb()
    start = time.perf_counter()
    with rasterio.open(args.scene) as src:
        image = src.read()
        profile = src.profile
    valid = (image != 0).all(axis=0)
    x = normalize(image, meta["normalization"], valid)
    del image
    height, width = valid.shape
    ph, pw = -height % tile, -width % tile
    x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect")
    probs = np.zeros(x.shape[:2] + (meta["n_classes"],), np.float32)
    origins = [(r, c) for r in range(0, x.shape[0], tile) for c in range(0, x.shape[1], tile)]
    for i in range(0, len(origins), args.batch):
        chunk = origins[i:i + args.batch]
        batch = np.stack([x[r:r + tile, c:c + tile] for r, c in chunk])
        out = model.predict_on_batch(batch)
        for (r, c), p in zip(chunk, out):
            probs[r:r + tile, c:c + tile] = p
    classes = (probs[:height, :width].argmax(-1) + 1).astype(np.uint8)
    classes[~valid] = 0
    profile.update(count=1, dtype="uint8", nodata=0, compress="deflate")
    with rasterio.open(os.path.join(args.workdir, "naive.tif"), "w", **profile) as dst:
        dst.write(classes[None])
    seconds = time.perf_counter() - start
    return {"peak_rss_mb": peak_rss_mb(), "ru_maxrss_mb": ru_maxrss_mb(),
            "rss_before_mb": before, "seconds": seconds,
            "tiles": len(origins), "valid_pixels": int(valid.sum())}


def child_models(args) -> dict:
    """Write the two benchmark models (in a child, so the parent never imports TensorFlow)."""
    spec = json.loads(args.model)
    for path, (filters, depth) in spec.items():
        make_model(path, filters, depth)
    return {"models": list(spec)}


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
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--tile", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=0,
                        help="end-to-end / bare runs to take the best of (default 3, "
                        "quick 2)")
    args = parser.parse_args(argv)

    if args.child:
        result = {"tiled": child_tiled, "naive": child_naive,
                  "models": child_models}[args.child](args)
        print(json.dumps(result, default=str))
        return 0

    quick = args.quick
    repeat = args.repeat or (2 if quick else 3)
    work = os.path.join(args.output, "bench_predict_work")
    os.makedirs(work, exist_ok=True)
    big_filters, big_depth = (8, 3) if quick else (32, 5)
    small_filters, small_depth = (4, 2) if quick else (8, 3)
    planet_size = (600, 700) if quick else (1200, 1500)
    rss_sizes = (1000, 3000) if quick else (1000, 8000)

    report = {"quick": quick, "machine": {"python": platform.python_version(),
                                          "cpus": os.cpu_count(), "node": platform.node()}}
    t0 = time.perf_counter()
    print("writing scenes and models ...", file=sys.stderr)
    big_model = os.path.join(work, f"unet_f{big_filters}_d{big_depth}.keras")
    small_model = os.path.join(work, f"unet_f{small_filters}_d{small_depth}.keras")
    run_child("models", model=json.dumps({big_model: [big_filters, big_depth],
                                          small_model: [small_filters, small_depth]}))
    planet = os.path.join(work, "planet_like.tif")
    nodata_fraction = write_planet_like(planet, *planet_size, seed=1)
    report["scene"] = {"height": planet_size[0], "width": planet_size[1], "bands": 4,
                       "nodata_fraction": round(nodata_fraction, 3)}

    # 1 + 2: throughput and naive comparison with the big model
    print("throughput: predict_scene vs bare model ...", file=sys.stderr)
    tiled = run_child("tiled", model=big_model, scene=planet, workdir=work, bare=True,
                      repeat=repeat)
    print("naive whole-image predictor ...", file=sys.stderr)
    naive = run_child("naive", model=big_model, scene=planet, workdir=work)
    pred = tiled["predict"]
    valid = pred["valid_pixels"]
    bare_seconds = min(tiled["bare_runs"])
    e2e_seconds = min(tiled["end_to_end_runs"])
    tile_px = pred["tiles_predicted"] * pred["tile_size"] ** 2
    report["throughput"] = {
        "model": f"U-Net FILTERS {big_filters} DEPTH {big_depth}",
        "tile_size": pred["tile_size"], "overlap": pred["overlap"], "batch_size": 4,
        "tiles_total": pred["tiles_total"], "tiles_predicted": pred["tiles_predicted"],
        "tiles_skipped": pred["tiles_skipped"], "valid_pixels": valid,
        "runs": repeat, "end_to_end_runs_s": tiled["end_to_end_runs"],
        "bare_model_runs_s": tiled["bare_runs"],
        "end_to_end_seconds": e2e_seconds,
        "end_to_end_valid_mpx_per_s": valid / 1e6 / e2e_seconds,
        "bare_model_seconds": bare_seconds,
        "bare_model_valid_mpx_per_s": valid / 1e6 / bare_seconds,
        "bare_model_tile_mpx_per_s": tile_px / 1e6 / bare_seconds,
        "ratio_end_to_end_over_bare": bare_seconds / e2e_seconds,
    }
    report["naive_comparison"] = {
        "predict_scene": {"seconds": pred["seconds"], "peak_rss_mb": tiled["peak_rss_mb"],
                          "ru_maxrss_mb": tiled["ru_maxrss_mb"],
                          "rss_before_mb": tiled["rss_before_mb"],
                          "tiles": pred["tiles_predicted"]},
        "naive": {"seconds": naive["seconds"], "peak_rss_mb": naive["peak_rss_mb"],
                  "ru_maxrss_mb": naive["ru_maxrss_mb"],
                  "rss_before_mb": naive["rss_before_mb"], "tiles": naive["tiles"]},
    }

    # 3: memory scaling with a small model
    scaling = {}
    for size in rss_sizes:
        print(f"peak RSS on {size} x {size} ...", file=sys.stderr)
        scene = os.path.join(work, f"scene_{size}.tif")
        write_planet_like(scene, size, size, seed=2)
        child = run_child("tiled", model=small_model, scene=scene, workdir=work)
        plain = run_child("naive", model=small_model, scene=scene, workdir=work)
        scaling[str(size)] = {"peak_rss_mb": child["peak_rss_mb"],
                              "ru_maxrss_mb": child["ru_maxrss_mb"],
                              "rss_before_mb": child["rss_before_mb"],
                              "seconds": child["predict"]["seconds"],
                              "valid_mpx_per_s": child["predict"]["megapixels_per_second"],
                              "naive_peak_rss_mb": plain["peak_rss_mb"],
                              "naive_seconds": plain["seconds"]}
        os.remove(scene)
    a, b = (str(s) for s in rss_sizes)
    report["memory_scaling"] = {
        "model": f"U-Net FILTERS {small_filters} DEPTH {small_depth}", "scenes": scaling,
        "peak_rss_growth_mb": scaling[b]["peak_rss_mb"] - scaling[a]["peak_rss_mb"],
        "naive_peak_rss_growth_mb": scaling[b]["naive_peak_rss_mb"]
        - scaling[a]["naive_peak_rss_mb"]}
    report["bench_seconds"] = time.perf_counter() - t0

    path = os.path.join(args.output, "bench_predict.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    print_table(report)
    print(f"\nwritten {path}")
    return 0


def print_table(report: dict) -> None:
    """Print the results as a small table."""
    t = report["throughput"]
    s = report["scene"]
    print(f"\nPlanet-like scene {s['width']} x {s['height']} x 4, nodata "
          f"{s['nodata_fraction']:.0%}; {t['model']}, tile {t['tile_size']} overlap "
          f"{t['overlap']}, batch {t['batch_size']}")
    print(f"tiles: {t['tiles_total']} total, {t['tiles_predicted']} predicted, "
          f"{t['tiles_skipped']} skipped (no valid pixel)")
    print(f"{'best of ' + str(t['runs']) + ' runs':34}{'seconds':>10}{'valid Mpx/s':>14}")
    print(f"{'bare model (same tiles)':34}{t['bare_model_seconds']:>10.2f}"
          f"{t['bare_model_valid_mpx_per_s']:>14.3f}")
    print(f"{'predict_scene end to end':34}{t['end_to_end_seconds']:>10.2f}"
          f"{t['end_to_end_valid_mpx_per_s']:>14.3f}")
    print(f"{'ratio end-to-end / bare':34}{t['ratio_end_to_end_over_bare']:>10.2f}")
    n = report["naive_comparison"]
    print(f"\n{'':34}{'seconds':>10}{'peak RSS MB':>14}{'tiles':>8}")
    for key, label in (("predict_scene", "predict_scene (tiled, blended)"),
                       ("naive", "naive whole-image")):
        row = n[key]
        print(f"{label:34}{row['seconds']:>10.2f}{row['peak_rss_mb']:>14.0f}{row['tiles']:>8}")
    m = report["memory_scaling"]
    print(f"\npeak RSS (MB), {m['model']}")
    print(f"{'':18}{'predict_scene s':>16}{'peak RSS':>10}{'naive s':>10}{'naive RSS':>11}")
    for size, row in m["scenes"].items():
        print(f"{size + ' x ' + size:18}{row['seconds']:>16.2f}{row['peak_rss_mb']:>10.0f}"
              f"{row['naive_seconds']:>10.2f}{row['naive_peak_rss_mb']:>11.0f}")
    print(f"{'growth':18}{'':>16}{m['peak_rss_growth_mb']:>10.0f}{'':>10}"
          f"{m['naive_peak_rss_growth_mb']:>11.0f}")


if __name__ == "__main__":
    sys.exit(main())
