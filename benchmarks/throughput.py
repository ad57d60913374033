"""The compiled model alone on random tiles: the benchmarks' measure of bare model speed.

Used by bench_predict.py (pipeline efficiency: bare model / end to end, replaying
the model calls of a ``predict_scene`` run) and bench_gpu.py (throughput per
precision).
"""

from __future__ import annotations

import time

import numpy as np

from wetland_unet_plugin.core.inference.cache import resolve_model
from wetland_unet_plugin.core.inference.predictors import get_predictor
from wetland_unet_plugin.core.inference.spec import model_spec
from wetland_unet_plugin.core.inference.tiling import default_tile_size


def bare_model_throughput(
    model,
    n_tiles: int = 0,
    tile_size: int | None = None,
    batch_size: int = 4,
    tta: int = 1,
    precision: str = "float32",
    seed: int = 0,
    calls=None,
    fold: bool = True,
    portable: bool = False,
) -> dict:
    """Time the compiled model alone on random tiles (no reading, blending or writing).

    Args:
        model: model path or ``LoadedModel``.
        n_tiles: number of tiles to predict (e.g. ``tiles_predicted`` of a scene).
        tile_size: tile size (default as ``predict_scene``).
        batch_size: tiles per model call.
        tta: TTA setting.
        precision: one of ``PRECISIONS``.
        seed: random seed of the tiles.
        calls: instead of ``n_tiles``: the model calls to replay, a list of
            ``(batch, rows, cols)`` (e.g. recorded from a ``predict_scene`` run, whose
            tiles are cropped to their valid part); each distinct shape is warmed up.
        fold, portable: as ``get_predictor``.

    Returns:
        dict with ``seconds`` (excluding warm-up calls), ``tiles``, ``tile_size``,
        ``batch_size``, ``megapixels`` (pixels through the model per transform) and
        ``tile_megapixels_per_second``.
    """
    loaded = resolve_model(model)
    spec = model_spec(loaded)
    tile = int(tile_size or default_tile_size(spec.patch_size, spec.depth))
    predictor = get_predictor(loaded, tta, precision, fold=fold, portable=portable)
    if calls is None:
        n_tiles = int(n_tiles)
        calls = [
            (min(batch_size, n_tiles - done), tile, tile) for done in range(0, n_tiles, batch_size)
        ]
    calls = [tuple(int(v) for v in call) for call in calls]
    rng = np.random.default_rng(seed)
    inputs = {}
    for call in calls:
        if call not in inputs:
            inputs[call] = rng.random(call + (spec.n_channels,), dtype=np.float32)
            predictor(inputs[call])  # warm-up: tracing and allocation
    start = time.perf_counter()
    for call in calls:
        predictor(inputs[call])
    seconds = time.perf_counter() - start
    pixels = sum(b * r * c for b, r, c in calls)
    return {
        "seconds": seconds,
        "tiles": sum(call[0] for call in calls),
        "tile_size": tile,
        "batch_size": batch_size,
        "megapixels": pixels / 1e6,
        "tile_megapixels_per_second": pixels / 1e6 / seconds if seconds else 0.0,
    }
