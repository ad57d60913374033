"""Training patches: normalised image windows with their labels, drawn reproducibly.

``PatchSource`` reads one pair's normalised windows and labels (from a
whole-image cache when it fits ``cache_limit_mb``, else through rasterio
windows); ``PatchSampler`` draws class-balanced patches from the training parts
or the validation parts, with dihedral augmentation (``dihedral.augment``) and
optional radiometric jitter. Invalid input pixels are 0 in the image and
unlabelled in the labels.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from rasterio.windows import Window

from .. import dihedral
from ..feedback import Feedback, SubFeedback
from ..normalize import normalize
from ..raster import masked_invalid, open_raster, valid_pixels
from ..schema import TRAIN
from .masks import MaskScan, mask_labels
from .pairs import SCAN_ROWS, PairInfo

#: Default memory for whole-image caches (normalised float32 + labels), in MB.
DEFAULT_CACHE_MB = TRAIN.param("CACHE_LIMIT_MB").default
#: Candidate windows tried before the best one so far is accepted.
MAX_TRIES = 20
#: Streams of patch indices: training epochs share one endless stream.
TRAIN_STREAM, VAL_STREAM, PROBE_STREAM = 1, 2, 3
#: BALANCE_CLASSES auto draws class-balanced patches when a class present has less than
#: this share of the labelled training pixels (see docs/decisions.md).
RARE_CLASS_SHARE = 0.05


def resolve_balance(choice: str, scans: list, n_classes: int) -> dict:
    """BALANCE_CLASSES as used: on, off, or for auto on when a class is rare.

    A class is rare when it has labelled training pixels, but fewer than
    ``RARE_CLASS_SHARE`` of all of them. Balancing lets a rare class be learnt at
    all; where no class is rare, patches drawn in proportion to the classes'
    pixels keep the classes' real frequencies and scored higher (docs/quality.md).

    Args:
        choice: "auto", "on" or "off".
        scans: ``masks.MaskScan`` per pair (their training-region counts).
        n_classes: N.

    Returns:
        dict with ``asked`` (the choice), ``balanced`` (bool), ``shares`` (each class's
        share of the labelled training pixels) and ``rare`` (0-based indices of the
        rare classes).
    """
    counts = np.zeros(n_classes)
    for scan in scans:
        counts += np.asarray(scan.train_counts[1 : n_classes + 1], dtype=np.float64)
    shares = counts / max(counts.sum(), 1.0)
    rare = [int(c) for c in np.flatnonzero((counts > 0) & (shares < RARE_CLASS_SHARE))]
    balanced = choice == "on" or (choice == "auto" and bool(rare))
    return {"asked": choice, "balanced": balanced, "shares": shares.tolist(), "rare": rare}


def describe_balance(info: dict, names: list) -> str:
    """How the patches are drawn and why, for the log, the metadata and the report."""
    how = "class-balanced" if info["balanced"] else "in proportion to the classes' labelled pixels"
    if info["asked"] != "auto":
        return f"{how} (BALANCE_CLASSES {info['asked']})"
    shares = info["shares"]
    if info["rare"]:
        listed = ", ".join(f"{names[c]} {100 * shares[c]:.1f}%" for c in info["rare"])
        return (
            f"{how} (auto: {listed} of the labelled training pixels, under "
            f"{100 * RARE_CLASS_SHARE:g}%)"
        )
    present = [c for c in range(len(shares)) if shares[c] > 0]
    smallest = min(present, key=lambda c: shares[c]) if present else None
    least = f"; the smallest, {names[smallest]}, {100 * shares[smallest]:.1f}%" if present else ""
    return (
        f"{how} (auto: no class under {100 * RARE_CLASS_SHARE:g}% of the labelled "
        f"training pixels{least})"
    )


def radiometric_jitter(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
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

    def __init__(
        self,
        pair: PairInfo,
        scan: MaskScan,
        bands: list,
        stats: dict,
        n_classes: int,
        cache: bool,
        feedback: Feedback | None = None,
    ):
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
                valid = masked_invalid(
                    src, valid_pixels(block, pair.nodata), Window(0, row0, pair.width, rows)
                )
                normalize(block, self.stats, valid, out=self.image[row0 : row0 + rows])
                labels[row0 : row0 + rows][~valid] = 0
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
            return (
                self.image[row : row + size, col : col + size],
                self.labels[row : row + size, col : col + size],
            )
        image_ds, mask_ds = self._datasets()
        window = Window(col, row, size, size)
        block = image_ds.read(self.bands, window=window)
        valid = masked_invalid(image_ds, valid_pixels(block, self.pair.nodata), window)
        labels, _ = mask_labels(
            mask_ds.read(window=window), self.pair.mask_kind, self.n_classes, self.pair.mask_nodata
        )
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


def build_sources(
    pairs: list,
    scans: list,
    bands: list,
    stats: dict,
    n_classes: int,
    cache_limit_mb: float = DEFAULT_CACHE_MB,
    feedback: Feedback | None = None,
) -> list:
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

    def __init__(
        self,
        sources: list,
        n_classes: int,
        patch_size: int,
        min_labelled_fraction: float = 0.02,
        balance: bool = True,
        seed: int = 0,
        jitter: float = 0.0,
    ):
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
            image, labels = self.sources[position[0]].read(
                position[1], position[2], self.patch_size
            )
        else:
            position, image, labels = self._find(region, rng)
            if region == "val":
                self._positions[key] = position
        if augment:
            d = int(rng.integers(8))
            image, labels = dihedral.augment(image, d), dihedral.augment(labels, d)
            if self.jitter > 0:
                image = radiometric_jitter(image, self.jitter, rng)
        return image, labels

    def batches(
        self,
        region: str,
        batch_size: int,
        count: int | None = None,
        stream: int = 0,
        augment: bool = False,
        workers: int | None = None,
    ):
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
            patches = list(
                pool.map(lambda i: self.patch(region, i, stream, augment), range(index, stop))
            )
            yield (
                np.stack([p[0] for p in patches]).astype(np.float32, copy=False),
                np.stack([p[1] for p in patches]),
            )
            index = stop

    def _executor(self, workers: int | None) -> ThreadPoolExecutor:
        """The sampler's reader threads (shared by every stream, so file handles are too)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=workers or min(4, os.cpu_count() or 1),
                    thread_name_prefix="wetland-unet-patches",
                )
            return self._pool

    def label_counts(self, region: str, count: int, stream: int) -> np.ndarray:
        """Pixels per label (index 0 = unlabelled) over ``count`` patches of a stream."""
        totals = np.zeros(self.n_classes + 1, np.int64)
        for _, labels in self.batches(region, 32, count, stream):
            totals += np.bincount(labels.ravel(), minlength=self.n_classes + 1)[
                : self.n_classes + 1
            ]
        return totals

    def close(self) -> None:
        """Stop the reader threads and close every source's file handles."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        for source in self.sources:
            source.close()
