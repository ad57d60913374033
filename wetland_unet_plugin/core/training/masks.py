"""Training masks: the one mask decoder, and one windowed pass over each mask.

``mask_labels`` turns mask values (single-band class ids or one-hot bands) into
labels 0..N, 0 meaning unlabelled; every reader of masks in training uses it.
``scan_mask`` reads a mask once, checks its ids, counts pixels per class and
keeps a bounded random pool of labelled positions per class and region, from
which the patch sampler draws class-balanced patches. A label under a pixel that
is invalid in the image (nodata, NaN, a GDAL mask: clouds a prepared Planet scene
masked) counts as unlabelled, so it weighs in neither the class weights nor the
patch centres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rasterio.windows import Window

from ..feedback import CoreError, Feedback
from ..raster import masked_invalid, open_raster, valid_pixels
from .pairs import SCAN_ROWS, PairInfo, Region

#: Labelled positions kept per image, region and class for balanced sampling.
POOL_SIZE = 4096
#: Most distinct bad mask values named in an error message.
MAX_BAD_VALUES = 10


@dataclass
class MaskScan:
    """Pixels per class (index 0 = unlabelled) and labelled positions of one mask."""

    counts: np.ndarray  # (n_classes + 1,) whole mask
    train_counts: np.ndarray  # (n_classes + 1,) training region
    val_counts: np.ndarray  # (n_classes + 1,) validation region
    pools: dict = field(default_factory=dict)  # (region, class) -> (rows, cols)
    labels: np.ndarray | None = None  # whole label array when kept
    under_invalid: int = 0  # labels dropped because the image is invalid there


def mask_labels(block: np.ndarray, kind: str, n_classes: int, nodata=None):
    """Convert mask values to labels 0..N (0 = unlabelled).

    Args:
        block: (bands, rows, cols) mask values.
        kind: "classes" (one band of ids) or "onehot" (one band per class; a pixel
            with every band 0 is unlabelled, else it takes its largest band).
        n_classes: N.
        nodata: the mask's nodata value (unlabelled).

    Returns:
        (labels, bad): (rows, cols) uint8 labels, and a sorted array of the
        distinct values that are not class ids (single-band masks only).
    """
    unlabelled = ~valid_pixels(block, nodata)
    if kind == "onehot":
        data = np.where(np.isfinite(block), block, 0) if block.dtype.kind == "f" else block
        labelled = (data > 0).any(axis=0) & ~unlabelled
        labels = np.where(labelled, np.argmax(data, axis=0) + 1, 0).astype(np.uint8)
        return labels, np.empty(0)
    values = block[0]
    ok = ~unlabelled & (values >= 0) & (values <= n_classes)
    if values.dtype.kind == "f":
        ok &= values == np.floor(values)
    bad = ~ok & ~unlabelled
    bad_values = np.unique(values[bad])[:MAX_BAD_VALUES] if bad.any() else np.empty(0)
    labels = np.where(ok, values, 0).astype(np.uint8)
    return labels, bad_values


class Reservoir:
    """A uniform random sample of at most ``size`` positions from a stream.

    Every position gets a random key; the ``size`` smallest keys are kept.
    """

    def __init__(self, size: int):
        self.size = size
        self.keys = np.empty(0)
        self.rows = np.empty(0, dtype=np.int32)
        self.cols = np.empty(0, dtype=np.int32)

    def add(self, rows: np.ndarray, cols: np.ndarray, rng: np.random.Generator) -> None:
        keys = rng.random(len(rows))
        if len(keys) > self.size:  # only this batch's smallest keys can survive
            keep = np.argpartition(keys, self.size)[: self.size]
            keys, rows, cols = keys[keep], rows[keep], cols[keep]
        self.keys = np.concatenate([self.keys, keys])
        self.rows = np.concatenate([self.rows, rows.astype(np.int32)])
        self.cols = np.concatenate([self.cols, cols.astype(np.int32)])
        if len(self.keys) > self.size:
            keep = np.argpartition(self.keys, self.size)[: self.size]
            self.keys, self.rows, self.cols = self.keys[keep], self.rows[keep], self.cols[keep]


def _region_slice(region: Region | None, row0: int, rows: int):
    """Rows of a strip [row0, row0 + rows) inside a region: (start, stop) local, or None."""
    if region is None:
        return None
    start, stop = max(region.row0, row0), min(region.row1, row0 + rows)
    if stop <= start:
        return None
    return start - row0, stop - row0


def _bad_values_text(values) -> str:
    shown = ", ".join(f"{v:g}" for v in sorted(values)[:MAX_BAD_VALUES])
    return shown + (", ..." if len(values) > MAX_BAD_VALUES else "")


def scan_mask(
    pair: PairInfo,
    n_classes: int,
    rng: np.random.Generator,
    keep_labels: bool = False,
    feedback: Feedback | None = None,
) -> MaskScan:
    """Read a mask once, window by window: check ids, count classes, pool positions.

    Args:
        pair: the pair, with its regions set (``pairs.split_pairs``).
        n_classes: N.
        rng: random generator for the position pools.
        keep_labels: also return the whole (rows, cols) uint8 label array.
        feedback: progress and cancel.

    Returns:
        A ``MaskScan``.

    Raises:
        CoreError: when the mask holds values that are not class ids 0..N.
    """
    feedback = feedback or Feedback()
    size = n_classes + 1
    scan = MaskScan(np.zeros(size, np.int64), np.zeros(size, np.int64), np.zeros(size, np.int64))
    pools = {(name, c): Reservoir(POOL_SIZE) for name in ("train", "val") for c in range(1, size)}
    bad_values: set = set()
    labels_all = np.zeros((pair.height, pair.width), np.uint8) if keep_labels else None
    with open_raster(pair.mask, "mask") as src, open_raster(pair.image, "image") as image:
        for row0 in range(0, pair.height, SCAN_ROWS):
            feedback.check_canceled()
            rows = min(SCAN_ROWS, pair.height - row0)
            window = Window(0, row0, pair.width, rows)
            block = src.read(window=window)
            labels, bad = mask_labels(block, pair.mask_kind, n_classes, pair.mask_nodata)
            pixels = image.read(window=window)
            invalid = ~masked_invalid(image, valid_pixels(pixels, pair.nodata), window)
            scan.under_invalid += int(np.count_nonzero(labels[invalid]))
            labels[invalid] = 0
            if len(bad) and len(bad_values) < MAX_BAD_VALUES + 1:
                bad_values.update(float(v) for v in bad)
            scan.counts += np.bincount(labels.ravel(), minlength=size)[:size]
            if labels_all is not None:
                labels_all[row0 : row0 + rows] = labels
            _pool_strip(pair, scan, pools, labels, row0, rows, rng)
            feedback.progress((row0 + rows) / pair.height)
    if bad_values:
        raise CoreError(
            f"The mask '{pair.mask}' has values that are not class ids: "
            f"{_bad_values_text(bad_values)}. With {n_classes} CLASS_NAMES the ids are "
            f"1..{n_classes} (0 or the mask's nodata = unlabelled). Add a name to "
            "CLASS_NAMES for every class id in the mask (in id order), or recode the mask."
        )
    scan.pools = {key: (res.rows, res.cols) for key, res in pools.items() if len(res.rows)}
    scan.labels = labels_all
    return scan


def _pool_strip(
    pair: PairInfo,
    scan: MaskScan,
    pools: dict,
    labels: np.ndarray,
    row0: int,
    rows: int,
    rng: np.random.Generator,
) -> None:
    """Count a strip's labels per region and add its labelled positions to the pools."""
    size = len(scan.counts)
    for name, region, counts in (
        ("train", pair.train, scan.train_counts),
        ("val", pair.val, scan.val_counts),
    ):
        local = _region_slice(region, row0, rows)
        if local is None:
            continue
        part = labels[local[0] : local[1], region.col0 : region.col1]
        counts += np.bincount(part.ravel(), minlength=size)[:size]
        for c in range(1, size):
            r, cc = np.nonzero(part == c)
            if len(r):
                pools[(name, c)].add(r + row0 + local[0], cc + region.col0, rng)


def check_labels(pairs: list, scans: list) -> None:
    """Raise CoreErrors for masks without labels where training or validation needs them."""
    total = sum(int(s.counts[1:].sum()) for s in scans)
    if total == 0 and any(s.under_invalid for s in scans):
        raise CoreError(
            "The IMAGES have no valid pixel under the labels (nodata, NaN, Inf or masked "
            "clouds wherever the MASKS have a class): run wetlandunet:cleaninvalid on the "
            "images (MODE interpolate fills gaps), or label pixels where the images are "
            "valid."
        )
    if total == 0:
        raise CoreError(
            "The MASKS have no labelled pixels: every pixel is 0 or nodata. Class "
            "ids 1..N mark the labelled pixels; check the masks (and that "
            "wetlandunet:alignpair put the labels on the image grid)."
        )
    if sum(int(s.train_counts[1:].sum()) for s in scans) == 0:
        raise CoreError(
            "No labelled pixel lies in the training part of the images (the "
            "validation strip or images take VAL_FRACTION of them): label pixels "
            "there, or lower VAL_FRACTION."
        )
    if sum(int(s.val_counts[1:].sum()) for s in scans) == 0:
        if any(p.split.endswith("image") for p in pairs):
            held = ", ".join(f"'{p.image}'" for p in pairs if p.train is None)
            raise CoreError(
                f"No labelled pixel lies in the validation images ({held}), so "
                "the model cannot be validated: label some pixels there, change "
                "VAL_FRACTION, or use VAL_SPLIT 'rows'."
            )
        where = "; ".join(
            f"'{p.image}': last {p.val.height} rows"
            if p.split == "rows"
            else f"'{p.image}': last {p.val.width} columns"
            for p in pairs
        )
        raise CoreError(
            f"No labelled pixel lies in the validation strips ({where}), so the "
            "model cannot be validated: label some pixels there, or change "
            "VAL_FRACTION."
        )
