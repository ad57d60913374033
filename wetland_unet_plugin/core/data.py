"""Training data: checked image/mask pairs, normalisation statistics, patches, tf.data.

Everything here reads rasters through rasterio windows, so a large scene is
never loaded whole; a scene small enough for the cache limit is read once,
normalised, and kept in memory.

The steps, in the order ``train.train_model`` runs them:

1. ``check_pairs``: counts, grids, band counts, BANDS, mask kind (no pixels read).
2. ``split_regions``: a training part and a spatially separate validation strip
   per image (the last VAL_FRACTION of rows, a gap of PATCH_SIZE/2 between); or
   ``split_images``: whole images held back for validation (VAL_SPLIT "images"),
   so the training images lose no rows.
3. ``scan_mask``: one windowed pass over each mask: class ids checked, pixels per
   class counted, and a bounded random pool of labelled positions per class kept
   for class-balanced patch sampling.
4. ``sample_normalization``: robust per-band percentiles over valid pixels of a
   bounded sample of windows of every image.
5. ``PatchSampler``: random square patches (balanced by class, rejecting patches
   with too few labelled pixels), dihedral augmentation and optional radiometric
   jitter (``jitter``), invalid pixels set to 0
   and marked unlabelled; ``make_dataset`` wraps it in a prefetching tf.data pipeline.

Only ``make_dataset`` imports TensorFlow.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from rasterio.windows import Window

from .classes import parse_int_list
from .feedback import CoreError, Feedback, SubFeedback
from .normalize import check_finite, normalize, stats_from_samples
from .raster import grid_description, open_raster, same_grid, valid_pixels

#: Rows per window when a whole raster is scanned (masks, caches).
SCAN_ROWS = 512
#: Labelled positions kept per image, region and class for balanced sampling.
POOL_SIZE = 4096
#: Windows read per image for the normalisation statistics, and their size.
STATS_WINDOWS = 24
STATS_WINDOW_SIZE = 256
#: Valid pixels kept per image for the normalisation statistics.
STATS_PIXELS_PER_IMAGE = 100_000
#: Default memory for whole-image caches (normalised float32 + labels), in MB.
DEFAULT_CACHE_MB = 1024
#: Candidate windows tried before the best one so far is accepted.
MAX_TRIES = 20
#: Most distinct bad mask values named in an error message.
MAX_BAD_VALUES = 10


@dataclass
class Region:
    """A rectangle of pixels [row0, row1) x [col0, col1)."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def height(self) -> int:
        return self.row1 - self.row0

    @property
    def width(self) -> int:
        return self.col1 - self.col0

    def as_list(self) -> list:
        return [int(self.row0), int(self.row1), int(self.col0), int(self.col1)]


@dataclass
class PairInfo:
    """What training needs to know about one image/mask pair (no pixels)."""

    index: int
    image: str
    mask: str
    width: int
    height: int
    image_count: int
    dtype: str
    nodata: float | None
    mask_count: int
    mask_nodata: float | None
    mask_kind: str                   # "classes" (single band ids) or "onehot"
    crs_wkt: str
    crs_name: str
    pixel_size: tuple
    band_descriptions: list
    train: Region | None = None      # None: a validation image (VAL_SPLIT "images")
    val: Region | None = None        # None: a training image (VAL_SPLIT "images")
    split: str = ""                  # "rows", "columns", "training image", "validation image"


@dataclass
class MaskScan:
    """Pixels per class (index 0 = unlabelled) and labelled positions of one mask."""

    counts: np.ndarray               # (n_classes + 1,) whole mask
    train_counts: np.ndarray         # (n_classes + 1,) training region
    val_counts: np.ndarray           # (n_classes + 1,) validation region
    pools: dict = field(default_factory=dict)   # (region, class) -> (rows, cols)
    labels: np.ndarray | None = None            # whole label array when kept


def as_path_list(value, what: str) -> list:
    """Turn one path, a ';'-separated string or a sequence into a list of paths.

    Raises:
        CoreError: when no path is given.
    """
    if value is None:
        items = []
    elif isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        items = [p for p in str(value).split(";")]
    items = [p.strip() for p in items if p and p.strip()]
    if not items:
        raise CoreError(f"No {what} given: choose at least one raster.")
    return items


def select_bands(bands, count: int, source: str) -> list:
    """Return the 1-based input bands to use, checked against the image band count.

    Args:
        bands: None (all bands), "1,2,3,7" or a list of 1-based band numbers.
        count: the images' band count.
        source: image path for messages.

    Raises:
        CoreError: for bands out of range or repeated.
    """
    chosen = parse_int_list(bands, "BANDS")
    if not chosen:
        return list(range(1, count + 1))
    bad = [b for b in chosen if b < 1 or b > count]
    if bad:
        raise CoreError(f"BANDS {', '.join(map(str, bad))} out of range: the images have "
                        f"{count} bands, numbered 1..{count} (e.g. '{source}'). Band numbers "
                        "start at 1; choose bands that exist, or leave BANDS empty for all.")
    repeated = sorted({b for b in chosen if chosen.count(b) > 1})
    if repeated:
        raise CoreError(f"BANDS repeats band {', '.join(map(str, repeated))}: list each "
                        "input band once, in the order the model should see them.")
    return chosen


def check_pairs(images, masks, n_classes: int, bands=None) -> tuple[list, list]:
    """Open every image/mask pair and check counts, grids, band counts, BANDS and masks.

    Reads metadata only, no pixels.

    Args:
        images: image paths (a list, or one string with ';' between paths).
        masks: mask paths in the same order.
        n_classes: number of classes N (from CLASS_NAMES).
        bands: optional 1-based band selection.

    Returns:
        (pairs, bands): a ``PairInfo`` per pair, and the 1-based bands to use.

    Raises:
        CoreError: naming the pair and the fix, for any mismatch.
    """
    images = as_path_list(images, "IMAGES")
    masks = as_path_list(masks, "MASKS")
    if len(images) != len(masks):
        raise CoreError(f"{len(images)} IMAGES but {len(masks)} MASKS: give one mask per "
                        "image, in the same order.")
    pairs = []
    for index, (image_path, mask_path) in enumerate(zip(images, masks)):
        if os.path.exists(image_path) and os.path.exists(mask_path) and \
                os.path.samefile(image_path, mask_path):
            raise CoreError(f"Pair {index + 1}: the mask is the image itself ('{image_path}'): "
                            "give the label raster as the mask.")
        with open_raster(image_path, "image") as img, open_raster(mask_path, "mask") as msk:
            if not same_grid(img, msk):
                raise CoreError(
                    f"Pair {index + 1}: the image '{image_path}' ({grid_description(img)}) and "
                    f"the mask '{mask_path}' ({grid_description(msk)}) are not on the same "
                    "pixel grid. Run wetlandunet:alignpair on this pair first and train on "
                    "its outputs.")
            if msk.count != 1 and msk.count != n_classes:
                raise CoreError(
                    f"The mask '{mask_path}' has {msk.count} bands: a mask is either one band "
                    f"of class ids 1..{n_classes} (0 = unlabelled) or one-hot with one band "
                    f"per class ({n_classes} bands for the {n_classes} CLASS_NAMES). Check "
                    "CLASS_NAMES or the mask.")
            res = img.res
            pairs.append(PairInfo(
                index=index, image=image_path, mask=mask_path, width=img.width,
                height=img.height, image_count=img.count, dtype=str(img.dtypes[0]),
                nodata=img.nodata, mask_count=msk.count, mask_nodata=msk.nodata,
                mask_kind="classes" if msk.count == 1 else "onehot",
                crs_wkt=img.crs.to_wkt() if img.crs else "",
                crs_name=str(img.crs) if img.crs else "",
                pixel_size=(float(res[0]), float(res[1])),
                band_descriptions=list(img.descriptions)))
    counts = sorted({p.image_count for p in pairs})
    if len(counts) > 1:
        listing = "; ".join(f"'{p.image}': {p.image_count}" for p in pairs)
        raise CoreError(f"The IMAGES have different band counts ({listing}). Train on images "
                        "from the same sensor with the same bands in the same order.")
    chosen = select_bands(bands, pairs[0].image_count, pairs[0].image)
    return pairs, chosen


def _split(length: int, other: int, patch_size: int, val_fraction: float):
    """Return (train_end, val_start) along one axis, or None when it does not fit."""
    if other < patch_size:
        return None
    gap = patch_size // 2
    n_val = max(int(round(length * val_fraction)), patch_size)
    train_end = length - n_val - gap
    if train_end < patch_size:
        return None
    return train_end, length - n_val


def split_regions(pair: PairInfo, patch_size: int, val_fraction: float) -> PairInfo:
    """Give a pair its training part and its spatially separate validation strip.

    The validation strip is the last VAL_FRACTION of rows (at least PATCH_SIZE
    rows), with a gap of PATCH_SIZE/2 rows before it so no patch straddles both.
    An image too short for that is split along its columns instead.

    Raises:
        CoreError: when the image is smaller than a patch, or too small for both parts.
    """
    if pair.width < patch_size or pair.height < patch_size:
        limit = min(pair.width, pair.height)
        raise CoreError(f"PATCH_SIZE {patch_size} is larger than the image '{pair.image}' "
                        f"({pair.width} x {pair.height} px). Choose a PATCH_SIZE of at most "
                        f"{limit} (a multiple of 2**DEPTH), or use larger images.")
    rows = _split(pair.height, pair.width, patch_size, val_fraction)
    if rows:
        pair.train = Region(0, rows[0], 0, pair.width)
        pair.val = Region(rows[1], pair.height, 0, pair.width)
        pair.split = "rows"
        return pair
    cols = _split(pair.width, pair.height, patch_size, val_fraction)
    if cols:
        pair.train = Region(0, pair.height, 0, cols[0])
        pair.val = Region(0, pair.height, cols[1], pair.width)
        pair.split = "columns"
        return pair
    need = 2 * patch_size + patch_size // 2
    raise CoreError(f"The image '{pair.image}' ({pair.width} x {pair.height} px) is too small "
                    f"for a training part and a separate validation strip of PATCH_SIZE "
                    f"{patch_size}: it needs at least {need} rows or columns. Choose a smaller "
                    "PATCH_SIZE or VAL_FRACTION, or use a larger image.")


#: Ways to hold out validation data (VAL_SPLIT).
VAL_SPLITS = ("rows", "images")


def validation_image_indices(n_images: int, val_fraction: float) -> list:
    """Indices of the images held back for validation by ``split_images``.

    round(n_images * val_fraction) images (at least 1, at most n_images - 1), spread
    evenly over the list: image int((k + 0.5) * n_images / n_val) for k = 0..n_val-1.
    """
    n_val = min(max(1, int(round(n_images * val_fraction))), n_images - 1)
    return sorted({int((k + 0.5) * n_images / n_val) for k in range(n_val)})


def split_images(pairs: list, patch_size: int, val_fraction: float) -> list:
    """Hold back whole images for validation; the others are used whole for training.

    Training and validation pixels are then in different images (disjoint by
    construction), and no training image gives up rows to a validation strip and
    its gap: on small images (tiles of a few hundred pixels) the strip costs a
    large share of the training data.

    Raises:
        CoreError: with fewer than two images, or an image smaller than a patch.
    """
    if len(pairs) < 2:
        raise CoreError("VAL_SPLIT 'images' holds back whole images for validation, so it "
                        f"needs at least two image/mask pairs ({len(pairs)} given). Add "
                        "images, or use VAL_SPLIT 'rows' (a strip of every image).")
    for pair in pairs:
        if pair.width < patch_size or pair.height < patch_size:
            limit = min(pair.width, pair.height)
            raise CoreError(f"PATCH_SIZE {patch_size} is larger than the image '{pair.image}' "
                            f"({pair.width} x {pair.height} px). Choose a PATCH_SIZE of at "
                            f"most {limit} (a multiple of 2**DEPTH), or use larger images.")
    held = set(validation_image_indices(len(pairs), val_fraction))
    for i, pair in enumerate(pairs):
        whole = Region(0, pair.height, 0, pair.width)
        if i in held:
            pair.train, pair.val, pair.split = None, whole, "validation image"
        else:
            pair.train, pair.val, pair.split = whole, None, "training image"
    return pairs


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


class _Reservoir:
    """A uniform random sample of at most ``size`` positions from a stream."""

    def __init__(self, size: int):
        self.size = size
        self.keys = np.empty(0)
        self.rows = np.empty(0, dtype=np.int32)
        self.cols = np.empty(0, dtype=np.int32)

    def add(self, rows: np.ndarray, cols: np.ndarray, rng: np.random.Generator) -> None:
        keys = rng.random(len(rows))
        if len(keys) > self.size:   # only this batch's smallest keys can survive
            keep = np.argpartition(keys, self.size)[:self.size]
            keys, rows, cols = keys[keep], rows[keep], cols[keep]
        self.keys = np.concatenate([self.keys, keys])
        self.rows = np.concatenate([self.rows, rows.astype(np.int32)])
        self.cols = np.concatenate([self.cols, cols.astype(np.int32)])
        if len(self.keys) > self.size:
            keep = np.argpartition(self.keys, self.size)[:self.size]
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


def scan_mask(pair: PairInfo, n_classes: int, rng: np.random.Generator,
              keep_labels: bool = False, feedback: Feedback | None = None) -> MaskScan:
    """Read a mask once, window by window: check ids, count classes, pool positions.

    Args:
        pair: the pair, with its regions set (``split_regions``).
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
    pools = {(name, c): _Reservoir(POOL_SIZE) for name in ("train", "val")
             for c in range(1, size)}
    bad_values: set = set()
    labels_all = np.zeros((pair.height, pair.width), np.uint8) if keep_labels else None
    with open_raster(pair.mask, "mask") as src:
        for row0 in range(0, pair.height, SCAN_ROWS):
            feedback.check_canceled()
            rows = min(SCAN_ROWS, pair.height - row0)
            block = src.read(window=Window(0, row0, pair.width, rows))
            labels, bad = mask_labels(block, pair.mask_kind, n_classes, pair.mask_nodata)
            if len(bad) and len(bad_values) < MAX_BAD_VALUES + 1:
                bad_values.update(float(v) for v in bad)
            scan.counts += np.bincount(labels.ravel(), minlength=size)[:size]
            if labels_all is not None:
                labels_all[row0:row0 + rows] = labels
            for name, region, counts in (("train", pair.train, scan.train_counts),
                                         ("val", pair.val, scan.val_counts)):
                local = _region_slice(region, row0, rows)
                if local is None:
                    continue
                part = labels[local[0]:local[1], region.col0:region.col1]
                counts += np.bincount(part.ravel(), minlength=size)[:size]
                for c in range(1, size):
                    r, cc = np.nonzero(part == c)
                    if len(r):
                        pools[(name, c)].add(r + row0 + local[0], cc + region.col0, rng)
            feedback.progress((row0 + rows) / pair.height)
    if bad_values:
        raise CoreError(
            f"The mask '{pair.mask}' has values that are not class ids: "
            f"{_bad_values_text(bad_values)}. With {n_classes} CLASS_NAMES the ids are "
            f"1..{n_classes} (0 or the mask's nodata = unlabelled). Add a name to "
            "CLASS_NAMES for every class id in the mask (in id order), or recode the mask.")
    scan.pools = {key: (res.rows, res.cols) for key, res in pools.items() if len(res.rows)}
    scan.labels = labels_all
    return scan


def _random_windows(pair: PairInfo, rng: np.random.Generator, count: int, size: int):
    """Yield up to ``count`` random windows of at most size x size inside the image."""
    h, w = min(size, pair.height), min(size, pair.width)
    if h == pair.height and w == pair.width:
        yield Window(0, 0, w, h)
        return
    for _ in range(count):
        yield Window(int(rng.integers(0, pair.width - w + 1)),
                     int(rng.integers(0, pair.height - h + 1)), w, h)


def _valid_samples(block: np.ndarray, nodata) -> tuple[np.ndarray, int]:
    """Return ((n, bands) valid pixel values, total pixels) of a (bands, rows, cols) block."""
    valid = valid_pixels(block, nodata)
    return block[:, valid].T, valid.size


def _scan_valid_pixels(src, pair: PairInfo, bands: list, rng, limit: int) -> np.ndarray:
    """Read an image strip by strip; return up to ``limit`` valid pixels (empty if none)."""
    found = []
    for row0 in range(0, pair.height, SCAN_ROWS):
        rows = min(SCAN_ROWS, pair.height - row0)
        block = src.read(bands, window=Window(0, row0, pair.width, rows))
        samples, _ = _valid_samples(block, pair.nodata)
        if len(samples):
            found.append(samples)
    if not found:
        return np.empty((0, len(bands)))
    samples = np.concatenate(found)
    if len(samples) > limit:
        samples = samples[rng.choice(len(samples), limit, replace=False)]
    return samples


def sample_normalization(pairs: list, bands: list, rng: np.random.Generator,
                         feedback: Feedback | None = None) -> tuple[dict, list]:
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
        parts, total = [], 0
        with open_raster(pair.image, "image") as src:
            for window in _random_windows(pair, rng, STATS_WINDOWS, STATS_WINDOW_SIZE):
                samples, n = _valid_samples(src.read(bands, window=window), pair.nodata)
                parts.append(samples)
                total += n
            samples = np.concatenate(parts) if parts else np.empty((0, len(bands)))
            invalid_shares.append(1.0 - len(samples) / total if total else 1.0)
            if not len(samples):
                samples = _scan_valid_pixels(src, pair, bands, rng, STATS_PIXELS_PER_IMAGE)
        if not len(samples):
            raise CoreError(
                f"The image '{pair.image}' has no valid pixel in bands "
                f"{', '.join(map(str, bands))}: every pixel is nodata ({pair.nodata}), NaN or "
                "infinite. Check the image and its nodata value (wetlandunet:cleaninvalid "
                "can fill invalid pixels), or remove it from IMAGES.")
        if len(samples) > STATS_PIXELS_PER_IMAGE:
            samples = samples[rng.choice(len(samples), STATS_PIXELS_PER_IMAGE, replace=False)]
        collected.append(samples.astype(np.float64))
        feedback.progress((i + 1) / len(pairs))
    return stats_from_samples(np.concatenate(collected)), invalid_shares


def dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """Apply one of the 8 dihedral transforms to the first two axes of a square array.

    Args:
        array: (rows, cols, ...) with rows == cols.
        k: 0..7; k % 4 quarter turns, then a left-right flip when k >= 4.

    Returns:
        The transformed array (a view where numpy allows).
    """
    out = np.rot90(array, k % 4, axes=(0, 1))
    if k >= 4:
        out = out[:, ::-1]
    return out


def radiometric_jitter(image: np.ndarray, amount: float,
                       rng: np.random.Generator) -> np.ndarray:
    """Random per-band gain and offset of a normalised patch (radiometric augmentation).

    Each band b becomes ``x * g_b + o_b`` with g_b uniform in [1 - amount, 1 + amount]
    and o_b uniform in [-amount, amount], in normalised units (where the robust 2nd
    and 98th percentiles of the training data are 0 and 1): a model that sees
    brightness and contrast vary a little per band copes better with other dates,
    haze and sensor differences. Invalid pixels (all bands exactly 0, as the
    sources set them) stay 0; labels are not touched.

    Args:
        image: (rows, cols, bands) float32 normalised patch (not modified).
        amount: the bound of the gain change and offset, e.g. 0.05.
        rng: random generator.

    Returns:
        A new float32 array of the same shape.
    """
    bands = image.shape[-1]
    gain = rng.uniform(1.0 - amount, 1.0 + amount, bands).astype(np.float32)
    offset = rng.uniform(-amount, amount, bands).astype(np.float32)
    valid = np.any(image != 0, axis=-1, keepdims=True)
    return np.where(valid, image * gain + offset, np.float32(0)).astype(np.float32)


class PatchSource:
    """Reads normalised image windows and labels of one pair, from a cache or from disk.

    A cached source holds the whole image normalised (float32, channels last,
    invalid pixels 0) and its labels (invalid pixels 0). An uncached source reads
    windows, with one rasterio handle per thread.
    """

    def __init__(self, pair: PairInfo, scan: MaskScan, bands: list, stats: dict,
                 n_classes: int, cache: bool, feedback: Feedback | None = None):
        self.pair = pair
        self.scan = scan
        self.bands = list(bands)
        self.stats = stats
        self.n_classes = n_classes
        self.cached = cache
        self._local = threading.local()
        self._handles = []
        self._lock = threading.Lock()
        self.image = self.labels = None
        if cache:
            self._fill_cache(feedback or Feedback())

    @staticmethod
    def cache_bytes(pair: PairInfo, n_bands: int) -> int:
        """Memory a cached source of this pair takes."""
        return pair.width * pair.height * (4 * n_bands + 1)

    def _fill_cache(self, feedback: Feedback) -> None:
        pair = self.pair
        self.image = np.zeros((pair.height, pair.width, len(self.bands)), np.float32)
        labels = self.scan.labels
        if labels is None:
            raise ValueError("a cached source needs the scan's labels (keep_labels=True)")
        with open_raster(pair.image, "image") as src:
            for row0 in range(0, pair.height, SCAN_ROWS):
                feedback.check_canceled()
                rows = min(SCAN_ROWS, pair.height - row0)
                block = src.read(self.bands, window=Window(0, row0, pair.width, rows))
                valid = valid_pixels(block, pair.nodata)
                self.image[row0:row0 + rows] = normalize(block, self.stats, valid)
                labels[row0:row0 + rows][~valid] = 0
                feedback.progress((row0 + rows) / pair.height)
        self.labels = labels
        self.scan.labels = None

    def _datasets(self):
        handles = getattr(self._local, "handles", None)
        if handles is None:
            handles = (open_raster(self.pair.image, "image"), open_raster(self.pair.mask, "mask"))
            self._local.handles = handles
            with self._lock:
                self._handles.append(handles)
        return handles

    def read(self, row: int, col: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ((size, size, bands) float32 normalised, (size, size) uint8 labels).

        Invalid input pixels are 0 in the image and 0 (unlabelled) in the labels.
        """
        if self.cached:
            return (self.image[row:row + size, col:col + size],
                    self.labels[row:row + size, col:col + size])
        image_ds, mask_ds = self._datasets()
        window = Window(col, row, size, size)
        block = image_ds.read(self.bands, window=window)
        valid = valid_pixels(block, self.pair.nodata)
        labels, _ = mask_labels(mask_ds.read(window=window), self.pair.mask_kind,
                                self.n_classes, self.pair.mask_nodata)
        labels[~valid] = 0
        return normalize(block, self.stats, valid), labels

    def close(self) -> None:
        """Close the rasterio handles opened by any thread."""
        with self._lock:
            for handles in self._handles:
                for ds in handles:
                    ds.close()
            self._handles = []
        self._local = threading.local()


def build_sources(pairs: list, scans: list, bands: list, stats: dict, n_classes: int,
                  cache_limit_mb: float = DEFAULT_CACHE_MB,
                  feedback: Feedback | None = None) -> list:
    """Make a ``PatchSource`` per pair, caching whole images while they fit the limit.

    Args:
        pairs, scans: the pairs and their mask scans (same order).
        bands: 1-based bands.
        stats: normalisation statistics.
        n_classes: N.
        cache_limit_mb: memory for whole-image caches; 0 reads every patch from disk.
        feedback: progress and cancel.
    """
    feedback = feedback or Feedback()
    budget = cache_limit_mb * 1e6
    sources = []
    for i, (pair, scan) in enumerate(zip(pairs, scans)):
        need = PatchSource.cache_bytes(pair, len(bands))
        cache = scan.labels is not None and need <= budget
        if cache:
            budget -= need
        else:
            scan.labels = None
        sub = SubFeedback(feedback, i / len(pairs), (i + 1) / len(pairs))
        sources.append(PatchSource(pair, scan, bands, stats, n_classes, cache, sub))
    return sources


def _derived_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, stream, index])


class PatchSampler:
    """Draws labelled patches from the training parts or the validation strips.

    Each patch is a deterministic function of (seed, stream, index), so the
    patches are the same whatever the threads do, and the validation set is the
    same every epoch.

    Positions: a class is chosen (uniformly among the classes present when
    ``balance`` is on, else in proportion to their pixels), then a pair in
    proportion to that class's pixels in it, then a labelled pixel of that class
    from the pair's pool, and the patch is placed at a random offset around it.
    A patch with fewer than ``min_labelled_fraction`` labelled pixels is
    rejected; after ``MAX_TRIES`` the best candidate is kept.

    Augmented patches get a random dihedral transform and, when ``jitter`` > 0,
    radiometric jitter (``radiometric_jitter``).
    """

    def __init__(self, sources: list, n_classes: int, patch_size: int,
                 min_labelled_fraction: float = 0.02, balance: bool = True, seed: int = 0,
                 jitter: float = 0.0):
        self.jitter = float(jitter)
        self.sources = sources
        self.n_classes = n_classes
        self.patch_size = patch_size
        self.min_labelled_fraction = min_labelled_fraction
        self.balance = balance
        self.seed = seed
        self._positions: dict = {}
        self._pool = None
        self._pool_lock = threading.Lock()
        self._choices = {name: self._class_choices(name) for name in ("train", "val")}

    def _class_choices(self, region: str):
        """Per region: class probabilities and per class the pair probabilities."""
        counts = np.zeros((len(self.sources), self.n_classes))
        for s, source in enumerate(self.sources):
            scan = source.scan
            region_counts = scan.train_counts if region == "train" else scan.val_counts
            for c in range(1, self.n_classes + 1):
                if (region, c) in scan.pools:
                    counts[s, c - 1] = region_counts[c]
        totals = counts.sum(axis=0)
        present = totals > 0
        if not present.any():
            return None
        class_p = present.astype(np.float64) if self.balance else totals
        class_p = class_p / class_p.sum()
        pair_p = np.where(present, counts / np.where(present, totals, 1), 0)
        return class_p, pair_p.T

    def has_labels(self, region: str) -> bool:
        """True when the region of some pair holds labelled pixels."""
        return self._choices[region] is not None

    def _candidate(self, region: str, rng: np.random.Generator) -> tuple[int, int, int]:
        class_p, pair_p = self._choices[region]
        c = int(rng.choice(self.n_classes, p=class_p))
        s = int(rng.choice(len(self.sources), p=pair_p[c]))
        source = self.sources[s]
        rows, cols = source.scan.pools[(region, c + 1)]
        k = int(rng.integers(len(rows)))
        area = source.pair.train if region == "train" else source.pair.val
        size = self.patch_size
        row = int(np.clip(rows[k] - rng.integers(size), area.row0, area.row1 - size))
        col = int(np.clip(cols[k] - rng.integers(size), area.col0, area.col1 - size))
        return s, row, col

    def _find(self, region: str, rng: np.random.Generator):
        best, best_share = None, -1.0
        for _ in range(MAX_TRIES):
            s, row, col = self._candidate(region, rng)
            image, labels = self.sources[s].read(row, col, self.patch_size)
            share = float(np.count_nonzero(labels)) / labels.size
            if share > best_share:
                best, best_share = ((s, row, col), image, labels), share
            if share >= self.min_labelled_fraction:
                break
        return best

    def patch(self, region: str, index: int, stream: int = 0, augment: bool = False):
        """Return patch ``index`` of a stream: ((s, s, bands) float32, (s, s) uint8 labels).

        Args:
            region: "train" or "val".
            index: patch number in the stream.
            stream: stream number (epoch streams, probes); validation uses its own.
            augment: apply a random dihedral transform (and radiometric jitter when
                the sampler's ``jitter`` > 0).
        """
        rng = _derived_rng(self.seed, stream, index)
        key = (region, stream, index)
        position = self._positions.get(key)
        if position is not None:
            image, labels = self.sources[position[0]].read(position[1], position[2],
                                                           self.patch_size)
        else:
            position, image, labels = self._find(region, rng)
            if region == "val":
                self._positions[key] = position
        if augment:
            k = int(rng.integers(8))
            image, labels = dihedral(image, k), dihedral(labels, k)
            if self.jitter > 0:
                image = radiometric_jitter(image, self.jitter, rng)
        return image, labels

    def batches(self, region: str, batch_size: int, count: int | None = None,
                stream: int = 0, augment: bool = False, workers: int | None = None):
        """Yield (images (b, s, s, bands) float32, labels (b, s, s) uint8) batches.

        Args:
            region: "train" or "val".
            batch_size: patches per batch (the last batch may be smaller).
            count: patches in all; None for an endless stream.
            stream: stream number (patch i of a stream is always the same patch).
            augment: random dihedral transforms.
            workers: reader threads (rasterio and numpy release the GIL); taken
                when the sampler's thread pool starts (default: up to 4).
        """
        pool = self._executor(workers)
        index = 0
        while count is None or index < count:
            stop = index + batch_size if count is None else min(index + batch_size, count)
            patches = list(pool.map(
                lambda i: self.patch(region, i, stream, augment), range(index, stop)))
            yield (np.stack([p[0] for p in patches]).astype(np.float32, copy=False),
                   np.stack([p[1] for p in patches]))
            index = stop

    def _executor(self, workers: int | None) -> ThreadPoolExecutor:
        """The sampler's reader threads (shared by every stream, so file handles are too)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=workers or min(4, os.cpu_count() or 1),
                    thread_name_prefix="wetland-unet-patches")
            return self._pool

    def label_counts(self, region: str, count: int, stream: int) -> np.ndarray:
        """Pixels per label (index 0 = unlabelled) over ``count`` patches of a stream."""
        totals = np.zeros(self.n_classes + 1, np.int64)
        for _, labels in self.batches(region, 32, count, stream):
            totals += np.bincount(labels.ravel(), minlength=self.n_classes + 1)[
                :self.n_classes + 1]
        return totals

    def close(self) -> None:
        """Stop the reader threads and close every source's file handles."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        for source in self.sources:
            source.close()


#: Streams of patch indices: training epochs share one endless stream.
TRAIN_STREAM, VAL_STREAM, PROBE_STREAM = 1, 2, 3


def make_dataset(sampler: PatchSampler, region: str, batch_size: int, n_classes: int,
                 class_weights, count: int | None = None, stream: int = TRAIN_STREAM,
                 augment: bool = False, workers: int | None = None):
    """A tf.data pipeline of (x, one-hot y, per-pixel weight) batches for Keras.

    Label 0 (unlabelled, or invalid input) gets weight 0 and an all-zero target;
    class c gets ``class_weights[c - 1]``.

    Args:
        sampler: the patch sampler.
        region: "train" or "val".
        batch_size: patches per batch.
        n_classes: N.
        class_weights: N weights.
        count: patches in all (None: endless).
        stream: patch stream.
        augment: dihedral augmentation.
        workers: reader threads.

    Returns:
        A prefetching ``tf.data.Dataset``.
    """
    import tensorflow as tf

    size = sampler.patch_size
    n_bands = len(sampler.sources[0].bands)
    table = tf.constant([0.0] + [float(w) for w in class_weights], tf.float32)

    def generate():
        for x, labels in sampler.batches(region, batch_size, count, stream, augment, workers):
            yield check_finite(x, "training patches"), labels

    dataset = tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec((None, size, size, n_bands), tf.float32),
        tf.TensorSpec((None, size, size), tf.uint8)))

    def to_targets(x, labels):
        ids = tf.cast(labels, tf.int32)
        y = tf.one_hot(ids - 1, n_classes, dtype=tf.float32)   # label 0 -> all zeros
        return x, y, tf.gather(table, ids)

    batches = tf.data.INFINITE_CARDINALITY if count is None else -(-count // batch_size)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    return dataset.map(to_targets).prefetch(tf.data.AUTOTUNE)
