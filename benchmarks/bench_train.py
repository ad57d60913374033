"""Training benchmark: what train_model's input pipeline costs next to the model.

    python benchmarks/bench_train.py            # FILTERS 16, DEPTH 4, PATCH 128 (CPU-sized)
    python benchmarks/bench_train.py --quick    # a tiny model, well under a minute
    python benchmarks/bench_train.py --full     # the contract defaults (160 px, 32, 5): GPU
    python benchmarks/bench_train.py --small    # the quality benchmark's 32 px, 16, 3

For each way of reading the data it reports training patches per second of

1. ``pipeline only``: iterating train_model's tf.data pipeline (random patches
   through rasterio windows or the in-memory cache, rejection of poorly
   labelled patches, dihedral augmentation, normalisation, one-hot targets,
   per-pixel weights) with no model: the most the pipeline can feed;
2. ``fit, in-memory arrays``: ``model.fit`` on numpy arrays of the same
   patches (x, y, sample weights), same model, same batch size;
3. ``train_model``: the real job end to end, per-epoch time from the model
   file's history.

Both fits compile the training step with XLA, as train_model does by default
(``--no-xla``: neither does). For the cached data the in-memory fit also runs
with XLA off, and ``XLA speed-up`` gives the ratio of the two (wall and CPU
time) side by side.

Both fits run EPOCHS (4) epochs with a one-batch validation; the fastest
epoch after the first (which traces the model) is taken, so that other work on
a shared machine does not pass for pipeline cost. Overhead = train_model's
epoch time / the in-memory fit's - 1 (target < 10 %); the same ratio of
process CPU time is given too, which other processes on a shared machine
disturb less than wall time. Two data sources: ``cached`` (the scene fits the cache and is read
once) and ``windowed`` (cache off: every patch is read from a tiled GeoTIFF).

Results go to bench_output/bench_train.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CLASS_NAMES = ["water", "wetland", "forest"]
EPOCHS = 4
SPECTRA = np.array([[600, 700, 500, 300], [500, 900, 700, 1800], [400, 800, 450, 3500]], np.float32)


def write_scene(
    image_path: str, mask_path: str, size: int, seed: int = 0, block_rows: int = 256
) -> None:
    """Write a 4-band uint16 tiled scene (Planet-like) and its class mask, by row blocks."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    common = dict(
        driver="GTiff",
        width=size,
        height=size,
        crs="EPSG:32633",
        transform=from_origin(400000, 5900000, 3.0, 3.0),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    fields = np.stack(
        [gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), 6) for _ in range(3)]
    )
    classes = (np.argmax(fields, axis=0) + 1).astype(np.uint8)
    del fields
    with (
        rasterio.open(image_path, "w", count=4, dtype="uint16", nodata=0, **common) as img,
        rasterio.open(mask_path, "w", count=1, dtype="uint8", **common) as msk,
    ):
        for row in range(0, size, block_rows):
            n = min(block_rows, size - row)
            part = classes[row : row + n]
            values = SPECTRA[part - 1] * (1 + 0.08 * rng.standard_normal((n, size, 4)))
            window = Window(0, row, size, n)
            img.write(
                np.clip(np.moveaxis(values, -1, 0), 1, 65535).astype(np.uint16), window=window
            )
            msk.write(part[None], window=window)


def prepare_sampler(image: str, mask: str, cfg: dict, cache_mb: float, seed: int):
    """The sampler train_model builds, with the same seed (so the same patches)."""
    from wetland_unet_plugin.core.feedback import Feedback
    from wetland_unet_plugin.core.training.pairs import check_pairs, split_regions
    from wetland_unet_plugin.core.training.patches import PatchSampler, build_sources
    from wetland_unet_plugin.core.training.prepare import scan_masks
    from wetland_unet_plugin.core.training.statistics import sample_normalization

    pairs, bands = check_pairs([image], [mask], len(CLASS_NAMES))
    for pair in pairs:
        split_regions(pair, cfg["patch_size"], 0.25)
    rng = np.random.default_rng(seed)
    scans = scan_masks(pairs, bands, len(CLASS_NAMES), rng, cache_mb, Feedback())
    stats, _ = sample_normalization(pairs, bands, rng)
    sources = build_sources(pairs, scans, bands, stats, len(CLASS_NAMES), cache_mb)
    return PatchSampler(sources, len(CLASS_NAMES), cfg["patch_size"], seed=seed)


def pipeline_only(sampler, cfg: dict, batches: int) -> float:
    """Patches per second of the tf.data pipeline alone (after two warm-up batches)."""
    from wetland_unet_plugin.core.training.dataset import make_dataset
    from wetland_unet_plugin.core.training.patches import TRAIN_STREAM

    dataset = make_dataset(
        sampler,
        "train",
        cfg["batch_size"],
        len(CLASS_NAMES),
        [1.0] * len(CLASS_NAMES),
        None,
        TRAIN_STREAM,
        augment=True,
    )
    iterator = iter(dataset)
    for _ in range(2):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * cfg["batch_size"] / (time.perf_counter() - start)


def in_memory_fit(sampler, cfg: dict, steps: int, seed: int, xla: bool) -> float:
    """(wall, CPU) seconds of the fastest epoch after the first of model.fit on arrays."""
    import keras

    from wetland_unet_plugin.core.training.keras_parts import compile_model
    from wetland_unet_plugin.core.training.patches import TRAIN_STREAM
    from wetland_unet_plugin.core.unet import build_unet

    n = steps * cfg["batch_size"]
    xs, labels = [], []
    for x, lab in sampler.batches("train", cfg["batch_size"], n, TRAIN_STREAM, augment=True):
        xs.append(x)
        labels.append(lab)
    x, lab = np.concatenate(xs), np.concatenate(labels).astype(np.int64)
    y = np.eye(len(CLASS_NAMES) + 1, dtype=np.float32)[lab][..., 1:]
    w = (lab > 0).astype(np.float32)
    b = cfg["batch_size"]
    keras.utils.set_random_seed(seed)
    model = compile_model(
        build_unet(4, len(CLASS_NAMES), cfg["filters"], cfg["depth"]), "categorical", 1e-3, xla
    )
    marks = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            marks.append((time.perf_counter(), time.process_time()))

    model.fit(
        x,
        y,
        sample_weight=w,
        batch_size=b,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
        validation_data=(x[:b], y[:b], w[:b]),
        callbacks=[Timer()],
    )
    return fastest_epoch(marks)


def fastest_epoch(marks: list) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest epoch after the first, from epoch-end marks."""
    walls = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    cpus = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
    return min(walls), min(cpus)


def train_model_epoch(
    image: str, mask: str, cfg: dict, steps: int, cache_mb: float, seed: int, folder: str
) -> tuple[tuple, dict]:
    """(wall, CPU) seconds of train_model's fastest epoch after the first, and extras.

    Epochs are timed between train_model's per-epoch log lines, the same way as
    the in-memory fit (epoch end to epoch end).
    """
    from wetland_unet_plugin.core.feedback import Feedback
    from wetland_unet_plugin.core.modelfile import read_metadata
    from wetland_unet_plugin.core.training import train_model

    marks = []

    class Marks(Feedback):
        def info(self, text):
            if text.startswith("Epoch "):
                marks.append((time.perf_counter(), time.process_time()))

    out = os.path.join(folder, "bench.keras")
    start = time.perf_counter()
    train_model(
        [image],
        [mask],
        CLASS_NAMES,
        out,
        patch_size=cfg["patch_size"],
        batch_size=cfg["batch_size"],
        train_size=steps * cfg["batch_size"],
        val_size=cfg["batch_size"],
        epochs=EPOCHS,
        filters=cfg["filters"],
        depth=cfg["depth"],
        seed=seed,
        early_stopping_patience=0,
        reduce_lr_patience=0,
        cache_limit_mb=cache_mb,
        xla=cfg["xla"],
        feedback=Marks(),
    )
    total = time.perf_counter() - start
    meta = read_metadata(out)
    os.remove(out)
    return fastest_epoch(marks), {
        "total_s": round(total, 2),
        "cached": meta["data"]["images"][0]["cached"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model and scene")
    parser.add_argument(
        "--full",
        action="store_true",
        help="contract defaults: PATCH 160, FILTERS 32, DEPTH 5 (use a GPU)",
    )
    parser.add_argument(
        "--small",
        action="store_true",
        help="bench_quality's layout: PATCH 32, FILTERS 16, DEPTH 3, BATCH 16",
    )
    parser.add_argument("--steps", type=int, help="training steps per epoch")
    parser.add_argument("--scene", type=int, help="scene side in pixels")
    parser.add_argument(
        "--no-xla", action="store_true", help="compile neither fit with XLA (train_model's XLA off)"
    )
    parser.add_argument("--output", default=os.path.join(ROOT, "bench_output", "bench_train.json"))
    args = parser.parse_args(argv)

    if args.full:
        cfg = dict(patch_size=160, filters=32, depth=5, batch_size=8, steps=40, scene=4096)
    elif args.small:
        cfg = dict(patch_size=32, filters=16, depth=3, batch_size=16, steps=64, scene=1024)
    elif args.quick:
        cfg = dict(patch_size=64, filters=8, depth=3, batch_size=8, steps=12, scene=1024)
    else:
        cfg = dict(patch_size=128, filters=16, depth=4, batch_size=8, steps=16, scene=2048)
    cfg["steps"] = args.steps or cfg["steps"]
    cfg["scene"] = args.scene or cfg["scene"]
    cfg["xla"] = not args.no_xla
    seed = 7

    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as folder:
        image, mask = os.path.join(folder, "scene.tif"), os.path.join(folder, "mask.tif")
        write_scene(image, mask, cfg["scene"], seed)
        for label, cache_mb in (("cached", 4096.0), ("windowed", 0.0)):
            sampler = prepare_sampler(image, mask, cfg, cache_mb, seed)
            try:
                capacity = pipeline_only(sampler, cfg, max(8, cfg["steps"]))
                memory_s = in_memory_fit(sampler, cfg, cfg["steps"], seed, cfg["xla"])
                plain_s = (
                    in_memory_fit(sampler, cfg, cfg["steps"], seed, False)
                    if cfg["xla"] and label == "cached"
                    else None
                )
            finally:
                sampler.close()
            job_s, extra = train_model_epoch(image, mask, cfg, cfg["steps"], cache_mb, seed, folder)
            patches = cfg["steps"] * cfg["batch_size"]
            results.append(
                {
                    "data": label,
                    "cached": extra["cached"],
                    "pipeline_only_patches_per_s": round(capacity, 1),
                    "fit_in_memory_patches_per_s": round(patches / memory_s[0], 2),
                    "train_model_patches_per_s": round(patches / job_s[0], 2),
                    "fit_in_memory_epoch_s": round(memory_s[0], 3),
                    "train_model_epoch_s": round(job_s[0], 3),
                    "fit_in_memory_epoch_cpu_s": round(memory_s[1], 3),
                    "train_model_epoch_cpu_s": round(job_s[1], 3),
                    "overhead": round(job_s[0] / memory_s[0] - 1.0, 4),
                    "overhead_cpu": round(job_s[1] / memory_s[1] - 1.0, 4),
                    "train_model_total_s": extra["total_s"],
                }
            )
            if plain_s:
                results[-1].update(
                    {
                        "fit_in_memory_no_xla_patches_per_s": round(patches / plain_s[0], 2),
                        "xla_speedup": round(plain_s[0] / memory_s[0], 3),
                        "xla_speedup_cpu": round(plain_s[1] / memory_s[1], 3),
                    }
                )

    report = {
        "config": cfg,
        "seed": seed,
        "machine": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "cpus": os.cpu_count(),
            "gpus": gpus,
            "platform": platform.platform(),
        },
        "results": results,
        "target": "overhead < 0.10",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)

    print(
        f"\nTraining input pipeline vs in-memory arrays: PATCH {cfg['patch_size']}, FILTERS "
        f"{cfg['filters']}, DEPTH {cfg['depth']}, BATCH {cfg['batch_size']}, "
        f"{cfg['steps']} steps/epoch, scene {cfg['scene']} px, "
        f"{'GPU ' + ', '.join(gpus) if gpus else f'CPU x{os.cpu_count()}'}, "
        f"XLA {'on' if cfg['xla'] else 'off'}"
    )
    head = (
        f"{'data':<10}{'pipeline only':>15}{'fit in-memory':>15}{'train_model':>13}"
        f"{'overhead':>10}{'CPU time':>10}"
    )
    print(
        head + "\n" + f"{'':<10}{'patches/s':>15}{'patches/s':>15}{'patches/s':>13}"
        f"{'(wall)':>10}{'overhead':>10}"
    )
    print("-" * len(head))
    for r in results:
        print(
            f"{r['data']:<10}{r['pipeline_only_patches_per_s']:>15.1f}"
            f"{r['fit_in_memory_patches_per_s']:>15.2f}{r['train_model_patches_per_s']:>13.2f}"
            f"{r['overhead'] * 100:>9.1f}%{r['overhead_cpu'] * 100:>9.1f}%"
        )
    for r in results:
        if "xla_speedup" in r:
            print(
                f"\nXLA speed-up of the in-memory fit ({r['data']}): "
                f"{r['fit_in_memory_no_xla_patches_per_s']:.2f} -> "
                f"{r['fit_in_memory_patches_per_s']:.2f} patches/s, x{r['xla_speedup']:.2f} "
                f"wall, x{r['xla_speedup_cpu']:.2f} CPU time"
            )
    print(f"\nwritten {args.output}")
    worst = max(r["overhead"] for r in results)
    return 0 if math.isfinite(worst) else 1


if __name__ == "__main__":
    sys.exit(main())
