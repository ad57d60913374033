"""float32 against mixed_bfloat16 on this machine's CPU: speed, and what changes in the map.

    .venv/bin/python benchmarks/bench_precision.py            # ~3 min on 2 CPUs
    make demo && .venv/bin/python benchmarks/bench_precision.py   # + the trained model

Side by side in one process, alternating, best of ``--repeat``:

* the bare model (random weights) of MODEL_SIZE small and large on whole 512 px
  tiles through ``get_predictor``, in Mpx/s;
* ``predict_scene`` end to end on a Planet-sized scene (8000 x 4000, 30 % nodata)
  with the small model at TTA 1;
* with ``make demo``'s trained model (when ``demo_output`` has it): its scene
  predicted in both precisions, the share of valid pixels given the same class,
  the largest and mean probability difference, and the overall accuracy of both
  against the demo's labels (western half: training; eastern half: unseen).

PRECISION stays float32 by default: bfloat16 changes a share of the classes and
depends on the CPU (it was 0.65x as fast on an earlier Xeon with AVX-512 BF16).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.dirname(os.path.abspath(__file__))):
    if path not in sys.path:
        sys.path.insert(0, path)

PRECISIONS = ("float32", "mixed_bfloat16")


def bare(loaded, repeat: int) -> dict:
    """Mpx/s of the bare model on batches of four 512 px tiles, per precision."""
    from wetland_unet_plugin.core.inference.predictors import get_predictor

    x = np.random.default_rng(0).random((4, 512, 512, 4), dtype=np.float32)
    predictors = {p: get_predictor(loaded, 1, p) for p in PRECISIONS}
    for predictor in predictors.values():
        predictor(x)  # trace and warm
    best = dict.fromkeys(PRECISIONS, float("inf"))
    for _ in range(repeat):
        for p, predictor in predictors.items():
            start = time.perf_counter()
            predictor(x)
            predictor(x)
            best[p] = min(best[p], time.perf_counter() - start)
    return {p: 2 * x.shape[0] * 512 * 512 / best[p] / 1e6 for p in PRECISIONS}


def planet(loaded, work: str, repeat: int) -> dict:
    """Seconds of ``predict_scene`` on the Planet-sized scene, per precision (all runs)."""
    from bench_limit import PLANET_SIZE, footprint_half_for
    from bench_predict import warm_scene, write_planet_like

    from wetland_unet_plugin.core.inference.scene import predict_scene

    scene = os.path.join(work, "planet.tif")
    nodata = write_planet_like(scene, *PLANET_SIZE, seed=3, half=footprint_half_for(0.3))
    warm = warm_scene(work)
    runs = {p: [] for p in PRECISIONS}
    for p in PRECISIONS:
        predict_scene(loaded, warm, os.path.join(work, "w.tif"), precision=p)
    for _ in range(repeat):
        for p in PRECISIONS:
            result = predict_scene(loaded, scene, os.path.join(work, f"p_{p}.tif"), precision=p)
            runs[p].append(result["seconds"])
    return {"nodata_fraction": nodata, "runs_s": runs}


def trained(model: str, scene: str, labels: str, work: str) -> dict:
    """The trained model's map in both precisions: agreement, and accuracy vs the labels."""
    import rasterio

    from wetland_unet_plugin.core.inference import get_cached_model
    from wetland_unet_plugin.core.inference.scene import predict_scene

    loaded = get_cached_model(model)
    classes, probs = {}, {}
    for p in PRECISIONS:
        out, prob = os.path.join(work, f"c_{p}.tif"), os.path.join(work, f"q_{p}.tif")
        predict_scene(loaded, scene, out, prob, precision=p, probability_dtype="float32", tta=1)
        with rasterio.open(out) as a, rasterio.open(prob) as b:
            classes[p], probs[p] = a.read(1), b.read()
    with rasterio.open(labels) as src:
        truth = src.read(1)
    a, b = classes["float32"], classes["mixed_bfloat16"]
    valid = a > 0
    diff = np.abs(probs["float32"] - probs["mixed_bfloat16"])[:, valid].max(axis=0)
    half = truth.shape[1] // 2
    accuracy = {}
    for p, mapped in classes.items():
        for name, part in (("west", np.s_[:, :half]), ("east", np.s_[:, half:])):
            t, m = truth[part], mapped[part]
            scored = (t > 0) & (m > 0)
            accuracy[f"{p} {name}"] = float((t[scored] == m[scored]).mean())
    return {
        "class_agreement": float((a[valid] == b[valid]).mean()),
        "max_probability_difference": float(diff.max()),
        "mean_probability_difference": float(diff.mean()),
        "overall_accuracy_vs_labels": accuracy,
    }


def main(argv=None) -> int:
    """Run the comparison, print it and write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--demo", default=os.path.join(ROOT, "demo_output"))
    ap.add_argument("--output", default=os.path.join(ROOT, "bench_output", "bench_precision.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from bench_limit import LIMIT_MODELS
    from bench_predict import make_model

    from wetland_unet_plugin.core.inference import get_cached_model

    report: dict = {"bare_mpx_s": {}}
    with tempfile.TemporaryDirectory() as work:
        for name, (filters, depth, patch) in LIMIT_MODELS.items():
            path = make_model(os.path.join(work, f"{name}.keras"), filters, depth, patch)
            report["bare_mpx_s"][name] = bare(get_cached_model(path), args.repeat)
            print(name, {p: round(v, 2) for p, v in report["bare_mpx_s"][name].items()}, "Mpx/s")
        small = get_cached_model(os.path.join(work, "small.keras"))
        report["planet_small"] = planet(small, work, args.repeat)
        print("Planet-sized scene, small model, seconds:", report["planet_small"]["runs_s"])
        files = [os.path.join(args.demo, f) for f in ("model.keras", "s2_stack.tif", "labels.tif")]
        if all(os.path.exists(f) for f in files):
            report["demo_model"] = trained(*files, work)
            print("make demo's model:", json.dumps(report["demo_model"], indent=1))
        else:
            print(f"No trained model in {args.demo}: run `make demo` for the map comparison.")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
