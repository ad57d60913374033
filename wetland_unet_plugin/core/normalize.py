"""Per-band normalisation from robust percentiles of valid pixels (stored in the model).

The seed normalised each image by its own global min and max, so one nodata
border or one hot pixel changed the scale of a whole Planet scene. Here the
statistics are computed once over the valid pixels of all training images and
stored in the model; prediction applies exactly the same scaling.
"""

from __future__ import annotations

import numpy as np

#: Percentiles that define 0 and 1 of the scaled data.
DEFAULT_PERCENTILES = (2.0, 98.0)


def stats_from_samples(samples: np.ndarray, percentiles=DEFAULT_PERCENTILES) -> dict:
    """Compute normalisation statistics from valid pixel samples.

    Args:
        samples: (n_pixels, n_bands) array of valid values of the selected bands.
        percentiles: (low, high) percentiles mapped to 0 and 1.

    Returns:
        ``{"method": "percentile", "percentiles": [lo, hi], "low": [...], "high": [...],
        "mean": [...], "std": [...]}`` with one entry per band.
    """
    samples = np.asarray(samples, dtype=np.float64)
    low = np.percentile(samples, percentiles[0], axis=0)
    high = np.percentile(samples, percentiles[1], axis=0)
    # A constant band would divide by zero: give it a unit range.
    high = np.where(high - low > 1e-12, high, low + 1.0)
    return {
        "method": "percentile",
        "percentiles": [float(p) for p in percentiles],
        "low": [float(v) for v in low],
        "high": [float(v) for v in high],
        "mean": [float(v) for v in samples.mean(axis=0)],
        "std": [float(v) for v in samples.std(axis=0)],
    }


def normalize(
    block: np.ndarray, stats: dict, valid: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Scale raw band values to the model's input range.

    Args:
        block: (bands, rows, cols) raw values of the model's bands, in model order.
        stats: the model's ``metadata["normalization"]``.
        valid: optional (rows, cols) boolean; invalid pixels become 0 (and NaN/Inf
            never reach the model even without it).
        out: optional (rows, cols, bands) float32 array to write into (a slot of a
            batch), so the result is not copied once more.

    Returns:
        (rows, cols, bands) float32, channels last (``out`` when given); valid data
        mostly in [0, 1], clipped to [-1, 2] so outliers cannot dominate.
    """
    low = np.asarray(stats["low"], dtype=np.float32)[:, None, None]
    high = np.asarray(stats["high"], dtype=np.float32)[:, None, None]
    if block.shape[0] != low.shape[0]:
        raise ValueError(f"normalize: block has {block.shape[0]} bands, statistics {low.shape[0]}")
    # band-first and in place: whole-plane passes over contiguous memory, then one
    # copy per band into the channels-last result (about 3x faster than the same
    # steps over a short last axis)
    span = high - low  # 0 only for huge integers equal after the cast: +-Inf, swept below
    scaled = block.astype(np.float32)
    scaled -= low
    scaled /= span
    if np.issubdtype(block.dtype, np.floating) or not span.all():
        scaled[~np.isfinite(scaled)] = 0.0  # NaN and +-Inf are no data, not extremes
    np.maximum(scaled, -1.0, out=scaled)
    np.minimum(scaled, 2.0, out=scaled)
    if valid is not None:
        np.multiply(scaled, valid, out=scaled)
    if out is None:
        out = np.empty(block.shape[1:] + block.shape[:1], dtype=np.float32)
    for band, plane in enumerate(scaled):
        out[..., band] = plane
    return out


#: Set to 1 to assert at the model boundary that no NaN/Inf reaches the network.
DEBUG_ENV = "WETLAND_UNET_DEBUG"


def check_finite(batch: np.ndarray, where: str) -> np.ndarray:
    """In debug mode ($WETLAND_UNET_DEBUG=1), fail if a batch holds NaN or Inf.

    Normalisation already maps invalid pixels to 0, so this never fires unless a
    change breaks that; it is the assertion at the model boundary.

    Args:
        batch: model input (any shape).
        where: what is being fed ("prediction tiles", "training patches").

    Returns:
        The batch unchanged.

    Raises:
        AssertionError: naming ``where`` and the count of non-finite values.
    """
    import os

    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        bad = int(np.size(batch) - np.count_nonzero(np.isfinite(batch)))
        if bad:
            raise AssertionError(f"{bad} NaN/Inf values in {where} at the model boundary")
    return batch
