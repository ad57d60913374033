"""No label under an invalid image pixel: the aligned mask is cleared where the aligned image
is invalid.

A label under image nodata, NaN, a GDAL per-dataset mask (e.g. the clouds a prepared
Planet scene masked) or outside the image's footprint after reprojection describes no
image pixel: training would ignore it, and a user or another tool reading the aligned
mask would take it for a real sample. Validity is judged on the aligned image itself,
on the output grid, with the one validity test of :mod:`..raster`.
"""

from __future__ import annotations

import numpy as np
import rasterio

from ..raster import chunk_windows, masked_invalid, valid_pixels


def clear_invalid_labels(image_path, mask_path, labelled, feedback):
    """Set the aligned mask to 0 (unlabelled) wherever the aligned image is invalid.

    Streamed in windows; only windows where a label is dropped are rewritten.

    Args:
        image_path: the aligned image (on the mask's grid).
        mask_path: the aligned mask, uint8/uint16 with 0 = unlabelled, updated in place.
        labelled: {class id (single-band mask) or band number (one-hot mask) as text:
            labelled pixels} as the mask was written.
        feedback: progress and cancel.

    Returns:
        (labelled, dropped): the labelled pixels left, keyed as ``labelled`` (a class
        left without a pixel is left out, a band is kept), and the labels dropped per
        key, only those with at least one.
    """
    with rasterio.open(image_path) as image, rasterio.open(mask_path, "r+") as mask:
        bytes_per_pixel = image.count * np.dtype(image.dtypes[0]).itemsize
        windows = list(chunk_windows(image.width, image.height, bytes_per_pixel))
        single = mask.count == 1
        size = 65536 if np.dtype(mask.dtypes[0]) == np.uint16 else 256
        dropped = np.zeros(size if single else mask.count + 1, dtype=np.int64)
        for n, window in enumerate(windows, start=1):
            feedback.check_canceled()
            invalid = ~masked_invalid(
                image, valid_pixels(image.read(window=window), image.nodata), window
            )
            if invalid.any():
                labels = mask.read(window=window)
                hit = (labels != 0) & invalid  # (bands, rows, cols)
                if hit.any():
                    if single:
                        dropped += np.bincount(labels[hit], minlength=size)[:size]
                    else:
                        dropped[1:] += hit.sum(axis=(1, 2))
                    labels[:, invalid] = 0
                    mask.write(labels, window=window)
            feedback.progress(n / len(windows))
    dropped = {str(i): int(c) for i, c in enumerate(dropped) if i and c}
    left = {k: v - dropped.get(k, 0) for k, v in labelled.items()}
    if single:
        left = {k: v for k, v in left.items() if v}
    return left, dropped
