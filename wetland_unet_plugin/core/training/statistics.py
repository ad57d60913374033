"""Per-band normalisation statistics of the training images, from a bounded sample.

Robust percentiles (``normalize.stats_from_samples``) over the valid pixels of
a few random windows of every image, so a large scene is never read whole; an
image whose sampled windows hold no valid pixel is scanned strip by strip.
"""

from __future__ import annotations

import numpy as np
from rasterio.windows import Window

from ..feedback import CoreError, Feedback
from ..normalize import stats_from_samples
from ..raster import masked_invalid, open_raster, valid_pixels
from .pairs import SCAN_ROWS, PairInfo

#: Windows read per image for the normalisation statistics, and their size.
STATS_WINDOWS = 24
STATS_WINDOW_SIZE = 256
#: Valid pixels kept per image for the normalisation statistics.
STATS_PIXELS_PER_IMAGE = 100_000


def _random_windows(pair: PairInfo, rng: np.random.Generator, count: int, size: int):
    """Yield up to ``count`` random windows of at most size x size inside the image."""
    h, w = min(size, pair.height), min(size, pair.width)
    if h == pair.height and w == pair.width:
        yield Window(0, 0, w, h)
        return
    for _ in range(count):
        yield Window(
            int(rng.integers(0, pair.width - w + 1)),
            int(rng.integers(0, pair.height - h + 1)),
            w,
            h,
        )


def _valid_samples(block: np.ndarray, nodata, src=None, window=None) -> tuple[np.ndarray, int]:
    """Return ((n, bands) valid pixel values, total pixels) of a (bands, rows, cols) block
    (without the pixels of ``src``'s GDAL per-dataset mask, when given)."""
    valid = valid_pixels(block, nodata)
    if src is not None:
        valid = masked_invalid(src, valid, window)
    return block[:, valid].T, valid.size


def _scan_valid_pixels(src, pair: PairInfo, bands: list, rng, limit: int) -> np.ndarray:
    """Read an image strip by strip; return up to ``limit`` valid pixels (empty if none)."""
    found = []
    for row0 in range(0, pair.height, SCAN_ROWS):
        rows = min(SCAN_ROWS, pair.height - row0)
        window = Window(0, row0, pair.width, rows)
        samples, _ = _valid_samples(src.read(bands, window=window), pair.nodata, src, window)
        if len(samples):
            found.append(samples)
    if not found:
        return np.empty((0, len(bands)))
    samples = np.concatenate(found)
    if len(samples) > limit:
        samples = samples[rng.choice(len(samples), limit, replace=False)]
    return samples


def _image_samples(pair: PairInfo, bands: list, rng: np.random.Generator) -> tuple:
    """(valid pixels of the sampled windows, or of a full scan when those had none;
    the share of invalid pixels in the sampled windows)."""
    parts, total = [], 0
    with open_raster(pair.image, "image") as src:
        for window in _random_windows(pair, rng, STATS_WINDOWS, STATS_WINDOW_SIZE):
            samples, n = _valid_samples(src.read(bands, window=window), pair.nodata, src, window)
            parts.append(samples)
            total += n
        samples = np.concatenate(parts) if parts else np.empty((0, len(bands)))
        invalid_share = 1.0 - len(samples) / total if total else 1.0
        if not len(samples):
            samples = _scan_valid_pixels(src, pair, bands, rng, STATS_PIXELS_PER_IMAGE)
    return samples, invalid_share


def sample_normalization(
    pairs: list, bands: list, rng: np.random.Generator, feedback: Feedback | None = None
) -> tuple[dict, list]:
    """Robust per-band statistics over valid pixels of a bounded sample of every image.

    Args:
        pairs: the pairs.
        bands: 1-based bands to use.
        rng: random generator (window positions, subsampling).
        feedback: progress and cancel.

    Returns:
        (stats, invalid_shares): ``normalize.stats_from_samples`` output, and per
        image the share of invalid (nodata, NaN, Inf) pixels in the sampled windows.

    Raises:
        CoreError: for an image without a single valid pixel.
    """
    feedback = feedback or Feedback()
    collected, invalid_shares = [], []
    for i, pair in enumerate(pairs):
        feedback.check_canceled()
        samples, invalid_share = _image_samples(pair, bands, rng)
        invalid_shares.append(invalid_share)
        if not len(samples):
            raise CoreError(
                f"The image '{pair.image}' has no valid pixel in bands "
                f"{', '.join(map(str, bands))}: every pixel is nodata ({pair.nodata}), NaN or "
                "infinite. Check the image and its nodata value (wetlandunet:cleaninvalid "
                "can fill invalid pixels), or remove it from IMAGES."
            )
        if len(samples) > STATS_PIXELS_PER_IMAGE:
            samples = samples[rng.choice(len(samples), STATS_PIXELS_PER_IMAGE, replace=False)]
        collected.append(samples.astype(np.float64))
        feedback.progress((i + 1) / len(pairs))
    return stats_from_samples(np.concatenate(collected)), invalid_shares
