"""Prediction near the compute limit (issue #21): ``bench_predict.py``'s section 7.

The compute limit of a scene is the time the bare model needs for its valid
pixels alone: ``valid pixels / throughput``, the throughput measured on whole
tiles (the default tile size, batch size and precision of ``predict_scene``,
random data, no I/O, as many pixels as the run sent through the model, best of N).
``predict_scene`` end to end (read, validate,
normalise, overlapping and cut tiles, model, blend, write) is timed side by
side in the same process, best of N; the ratio ``end to end / limit`` is the
figure the issue bounds (target <= 1.3). It splits into

* ``model pixels / valid pixels``: pixels computed for each valid one (overlaps
  between tiles, context kept around the footprint, tiles' sides rounded up);
* ``bare replay / (model pixels / throughput)``: the model's speed on the run's
  own (cut) tile shapes against whole tiles;
* ``end to end / bare replay``: reading, blending and writing not hidden behind
  the model.

The same ratio in process CPU time (all threads) is printed beside it: on a
shared machine it moves less with the load than wall time does.

Then the time to map a Planet-sized scene (8000 x 4000, 30 % nodata) end to end
with the ``auto`` CPU model at TTA 1, with its peak RSS, in a fresh process (a
batch's next scene: model loaded and traced on a small scene first), and its
ratio to the limit (the whole-tile throughput measured after each run over as many
pixels as the run sent through the model, in the same process and rounds, best of N
each).
"""

from __future__ import annotations

import os
import time

import numpy as np

#: (FILTERS, DEPTH, PATCH_SIZE) of the MODEL_SIZEs timed (core/training/sizing.py).
LIMIT_MODELS = {"small": (16, 3, 32), "large": (32, 5, 160)}
PLANET_SIZE = (4000, 8000)  # rows, columns


def whole_tile_throughput(loaded, repeat: int = 3, calls: int = 4, pixels: float = 0) -> dict:
    """The bare model's throughput on whole tiles at predict's defaults, best of ``repeat``.

    Random tiles of the default TILE_SIZE, BATCH_SIZE and PRECISION through
    ``get_predictor`` (the predictor ``predict_scene`` runs), one warm-up call first.

    Args:
        loaded: the ``LoadedModel``.
        repeat: timings to take the best of.
        calls: model calls (batches of whole tiles) per timing, at least.
        pixels: more calls, if needed, to send about this many pixels per timing.

    Returns:
        dict with ``tile_size``, ``batch_size``, ``precision``, ``pixels_per_second``
        (best wall), ``cpu_pixels_per_second`` (best process CPU time, all threads),
        ``runs_s`` (wall seconds of each timing) and ``megapixels`` per timing.
    """
    from wetland_unet_plugin.core.inference.predictors import get_predictor
    from wetland_unet_plugin.core.inference.spec import model_spec
    from wetland_unet_plugin.core.inference.tiling import default_tile_size
    from wetland_unet_plugin.core.schema.model import PRECISION_PARAM, TILE_BATCH_PARAM

    batch, precision = int(TILE_BATCH_PARAM.default), str(PRECISION_PARAM.default)
    spec = model_spec(loaded)
    tile = default_tile_size(spec.patch_size, spec.depth)
    predictor = get_predictor(loaded, 1, precision)
    calls = max(calls, round(pixels / (batch * tile * tile)))
    x = np.random.default_rng(0).random((batch, tile, tile, spec.n_channels), dtype=np.float32)
    predictor(x)  # warm-up
    wall, cpu = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        for _ in range(calls):
            predictor(x)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    pixels = calls * batch * tile * tile
    return {
        "tile_size": tile,
        "batch_size": batch,
        "precision": precision,
        "megapixels": pixels / 1e6,
        "runs_s": wall,
        "cpu_runs_s": cpu,
        "pixels_per_second": pixels / min(wall),
        "cpu_pixels_per_second": pixels / min(cpu),
    }


def limit_ratio(
    loaded, scene_path: str, workdir: str, repeat: int, recorder, load, other=None
) -> dict:
    """End to end vs the compute limit on one scene, side by side, best of ``repeat``.

    Args:
        loaded: the ``LoadedModel`` (already warm: traced on a small scene).
        scene_path: the scene.
        workdir: where outputs go.
        repeat: runs to take the best of (each: end to end, whole-tile throughput, replay).
        recorder: ``bench_predict._CallRecorder`` installed on ``inference.scene``.
        load: ``() -> [1, 5, 15 min load]``.
        other: optional (label, tile, overlap) also timed end to end in each round.

    Returns:
        dict of the figures (see the module docstring).
    """
    from throughput import bare_model_throughput

    from wetland_unet_plugin.core.inference import scene

    e2e, thr, replay, loads, others, cpu, cpu_thr = [], [], [], [], [], [], []
    result = calls = throughput = alt = None
    out_path = os.path.join(workdir, "limit.tif")
    if other:  # trace and warm its shapes outside the timing
        scene.predict_scene(loaded, scene_path, out_path, tile_size=other[1], overlap=other[2])
    for _ in range(repeat):
        loads.append(load()[0])
        recorder.calls = []
        start = time.process_time()
        result = scene.predict_scene(loaded, scene_path, out_path)
        cpu.append(time.process_time() - start)
        calls = list(recorder.calls)
        e2e.append(result["seconds"])
        throughput = whole_tile_throughput(
            loaded, repeat=1, pixels=result["model_megapixels"] * 1e6
        )
        thr.append(throughput["pixels_per_second"])
        cpu_thr.append(throughput["cpu_pixels_per_second"])
        replay.append(bare_model_throughput(loaded, calls=calls)["seconds"])
        if other:
            alt = scene.predict_scene(
                loaded, scene_path, out_path, tile_size=other[1], overlap=other[2]
            )
            others.append(alt["seconds"])
    best_e2e, best_thr, best_replay = min(e2e), max(thr), min(replay)
    valid = result["valid_pixels"]
    model_px = result["model_megapixels"] * 1e6
    limit = valid / best_thr
    if other:
        other = {
            "label": other[0],
            "tile_size": other[1],
            "overlap": other[2],
            "runs_s": others,
            "end_to_end_s": min(others),
            "ratio": min(others) / limit,
            "model_over_valid": alt["model_megapixels"] * 1e6 / valid,
        }
    return {
        "other": other,
        "valid_pixels": valid,
        "nodata_fraction": None,
        "tile_size": result["tile_size"],
        "overlap": result["overlap"],
        "tiles_predicted": result["tiles_predicted"],
        "tiles_total": result["tiles_total"],
        "model_calls": len(calls),
        "call_shapes": sorted({c[1:] for c in calls}),
        "model_megapixels": result["model_megapixels"],
        "whole_tile": throughput,
        "throughput_mpx_s": best_thr / 1e6,
        "runs_s": {
            "end_to_end": e2e,
            "replay": replay,
            "throughput_px_s": thr,
            "cpu_end_to_end": cpu,
            "cpu_throughput_px_s": cpu_thr,
        },
        "load_1min": loads,
        "end_to_end_s": best_e2e,
        "limit_s": limit,
        "ratio": best_e2e / limit,
        "cpu_end_to_end_s": min(cpu),
        "cpu_limit_s": valid / max(cpu_thr),
        "cpu_ratio": min(cpu) / (valid / max(cpu_thr)),
        "model_over_valid": model_px / valid,
        "replay_over_whole": best_replay / (model_px / best_thr),
        "end_to_end_over_replay": best_e2e / best_replay,
    }


#: Tiling compared with the defaults in ``seam_check``, per model: the small model's
#: previous defaults, and the overlap the large model keeps at 64 instead of 32.
SEAM_OTHER = {"small": ("previous defaults", 512, 64), "large": ("overlap 32", 512, 32)}


def seam_check(loaded, scene_path: str, workdir: str, other: tuple) -> dict:
    """How far tiled probabilities are from one whole-scene tile, at the defaults and at
    ``other``: max and mean absolute difference over valid pixels, class agreement. The
    whole scene in one tile (overlap 0) is what tiling approximates.

    Args:
        loaded: the ``LoadedModel``.
        scene_path: the scene.
        workdir: where outputs go.
        other: (label, tile, overlap) compared with the defaults.
    """
    import rasterio

    from wetland_unet_plugin.core.inference import predict_scene
    from wetland_unet_plugin.core.unet import tile_multiple

    def probs(name, **kwargs):
        path = os.path.join(workdir, f"seam_{name}.tif")
        result = predict_scene(
            loaded,
            scene_path,
            os.path.join(workdir, "seam_class.tif"),
            path,
            probability_dtype="float32",
            **kwargs,
        )
        with rasterio.open(path) as src:
            return src.read(), result

    with rasterio.open(scene_path) as src:
        side = max(src.height, src.width)
    mult = tile_multiple(int(loaded.metadata.get("depth") or 0))
    whole, _ = probs("whole", tile_size=-(-side // mult) * mult, overlap=0)
    valid = whole[0] >= 0
    out = {}
    runs = (("defaults", {}), (other[0], {"tile_size": other[1], "overlap": other[2]}))
    for name, kwargs in runs:
        got, result = probs(name, **kwargs)
        diff = np.abs(got[:, valid] - whole[:, valid])
        out[name] = {
            "tile_size": result["tile_size"],
            "overlap": result["overlap"],
            "max_probability_difference": float(diff.max()),
            "mean_probability_difference": float(diff.mean()),
            "class_agreement": float((got[:, valid].argmax(0) == whole[:, valid].argmax(0)).mean()),
        }
    return out


def planet_run(loaded, scene_path: str, workdir: str, peak_rss_mb, load, repeat: int = 3) -> dict:
    """Map the Planet-sized scene end to end at the defaults (TTA 1), side by side with the
    whole-tile throughput and with the same run without wide tiles (``merge=False``: each
    tile its own model call; one of each per round, best of ``repeat``); peak RSS of this
    process after the first run (before any throughput call).

    Args:
        loaded: the ``LoadedModel`` (warm).
        scene_path: the 8000 x 4000 scene.
        workdir: where the output goes.
        peak_rss_mb: ``() -> MiB`` (VmHWM).
        load: ``() -> [1, 5, 15 min load]``.
        repeat: rounds.
    """
    from wetland_unet_plugin.core.inference import predict_scene
    from wetland_unet_plugin.core.inference.scene import run_scene

    before_rss, before_load = peak_rss_mb(), load()[0]
    runs, cpus, thr, cpu_thr, peak, result = [], [], [], [], 0.0, None
    apart_runs, apart = [], None
    for _ in range(repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = predict_scene(loaded, scene_path, os.path.join(workdir, "planet_out.tif"), tta=1)
        runs.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu_start)
        peak = peak or peak_rss_mb()
        # as many pixels as the run sent through the model (as in limit_ratio): a timing as
        # long as the run's own sees the same moments of a shared machine
        throughput = whole_tile_throughput(
            loaded, repeat=1, pixels=result["model_megapixels"] * 1e6
        )
        thr.append(throughput["pixels_per_second"])
        cpu_thr.append(throughput["cpu_pixels_per_second"])
        start = time.perf_counter()
        apart = run_scene(
            loaded, scene_path, os.path.join(workdir, "planet_out.tif"), tta=1, merge=False
        )
        apart_runs.append(time.perf_counter() - start)
    valid, seconds = result["valid_pixels"], min(runs)
    limit = valid / max(thr)
    return {
        "tiles_apart": {
            "runs_s": apart_runs,
            "seconds": min(apart_runs),
            "ratio": min(apart_runs) / limit,
            "model_over_valid": apart["model_megapixels"] * 1e6 / valid,
            "model_calls": apart["model_calls"],
        },
        "model_calls": result["model_calls"],
        "seconds": seconds,
        "runs_s": runs,
        "limit_s": limit,
        "ratio": seconds / limit,
        # each round's run against the throughput timed right after it: the same moments
        # of a machine whose speed drifts between rounds
        "ratio_rounds": [t * rate / valid for t, rate in zip(runs, thr)],
        "cpu_ratio": min(cpus) / (valid / max(cpu_thr)),
        "throughput_mpx_s": max(thr) / 1e6,
        "throughput_runs_mpx_s": [t / 1e6 for t in thr],
        "model_over_valid": result["model_megapixels"] * 1e6 / valid,
        "valid_pixels": valid,
        "model_megapixels": result["model_megapixels"],
        "tiles_predicted": result["tiles_predicted"],
        "tile_size": result["tile_size"],
        "overlap": result["overlap"],
        "valid_mpx_per_s": valid / 1e6 / seconds,
        "peak_rss_mb": peak,
        "rss_before_mb": before_rss,
        "load_1min": before_load,
        "load_at_end": load()[0],
    }


def print_limit(report: dict) -> None:
    """Print section 7 (``report["limit"]``) as a small table."""
    lim = report["limit"]
    print(
        f"\nnear the compute limit: {lim['scene']}, best of {lim['repeat']} side by side; "
        f"load average at start {lim['load_at_start']}"
    )
    print(
        f"{'model':8}{'tile':>6}{'ovl':>5}{'thr Mpx/s':>11}{'limit s':>9}{'e2e s':>8}"
        f"{'ratio':>7}{'model/valid':>13}{'cut/whole':>11}{'e2e/replay':>12}{'CPU ratio':>11}"
    )
    for name, r in lim["models"].items():
        print(
            f"{name:8}{r['tile_size']:>6}{r['overlap']:>5}{r['throughput_mpx_s']:>11.3f}"
            f"{r['limit_s']:>9.2f}{r['end_to_end_s']:>8.2f}{r['ratio']:>7.2f}"
            f"{r['model_over_valid']:>13.3f}{r['replay_over_whole']:>11.3f}"
            f"{r['end_to_end_over_replay']:>12.3f}{r['cpu_ratio']:>11.2f}"
        )
    for name, r in lim["models"].items():
        o = r.get("other")
        if o:
            print(
                f"{name:8}{o['tile_size']:>6}{o['overlap']:>5}{'':>11}{'':>9}"
                f"{o['end_to_end_s']:>8.2f}{o['ratio']:>7.2f}{o['model_over_valid']:>13.3f}"
                f"   ({o['label']}, same rounds)"
            )
    if any(r.get("seams") for r in lim["models"].values()):
        print(
            "Seams of these random-weight models (understated: the demo's trained model at "
            "512 / 32 differs by up to 0.30, 0.033 % of pixels another class; "
            "`make bench-seams` after `make demo`):"
        )
    for name, r in lim["models"].items():
        for key, v in (r.get("seams") or {}).items():
            print(
                f"{name} model, tile {v['tile_size']} overlap {v['overlap']} ({key}) vs the whole "
                f"scene in one tile: probability difference max "
                f"{v['max_probability_difference']:.4f} mean {v['mean_probability_difference']:.5f}"
                f", class agreement {v['class_agreement']:.2%}"
            )
    p = lim.get("planet")
    if p:
        print(
            f"Planet-sized {p['scene']} ({p['nodata_fraction']:.0%} nodata), auto CPU model "
            f"(small), TTA 1, best of {len(p['runs_s'])} side by side: "
            f"{p['seconds']:.1f} s end to end ({p['valid_mpx_per_s']:.2f} valid "
            f"Mpx/s, tile {p['tile_size']} overlap {p['overlap']}), peak RSS "
            f"{p['peak_rss_mb']:.0f} MB, load {p['load_1min']}; {p['ratio']:.2f} x the "
            f"limit ({p['limit_s']:.1f} s at {p['throughput_mpx_s']:.2f} Mpx/s; in CPU time "
            f"{p['cpu_ratio']:.2f} x), model/valid {p['model_over_valid']:.3f}"
        )
        rounds = p.get("ratio_rounds")
        if rounds:
            print(
                "  round by round (each run against the throughput timed after it): "
                + ", ".join(f"{r:.2f}" for r in rounds)
                + f"; median {float(np.median(rounds)):.2f}"
            )
        a = p.get("tiles_apart")
        if a:
            print(
                f"  the same without wide tiles (each tile its own model call, same rounds): "
                f"{a['seconds']:.1f} s, {a['ratio']:.2f} x the limit, model/valid "
                f"{a['model_over_valid']:.3f}"
            )


def footprint_half_for(nodata: float) -> float:
    """Half-size of the footprint (normalised units) for a nodata fraction (no corner clipped)."""
    return float(np.sqrt(1.0 - nodata) / 2.0)
