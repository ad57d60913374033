"""Image/mask pairs for training: opened and checked, then split into training and validation.

``check_pairs`` reads metadata only (counts, grids, band counts, BANDS, mask
kind); ``split_pairs`` then gives every pair its training part and its
validation part, either a strip of every image (VAL_SPLIT "rows") or whole
images held back (VAL_SPLIT "images"). No pixels are read here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..classes import parse_int_list
from ..feedback import CoreError, Feedback
from ..raster import grid_description, open_raster, same_grid

#: Rows per window when a whole raster is read strip by strip (masks, statistics, caches).
SCAN_ROWS = 512


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
    mask_kind: str  # "classes" (single band ids) or "onehot"
    crs_wkt: str
    crs_name: str
    pixel_size: tuple
    band_descriptions: list
    radiometry: dict | None = None  # "radiometry", "product_kind": preparescene's tags
    train: Region | None = None  # None: a validation image (VAL_SPLIT "images")
    val: Region | None = None  # None: a training image (VAL_SPLIT "images")
    split: str = ""  # "rows", "columns", "training image", "validation image"


def band_key(name) -> str:
    """A band name as compared: lower case, no surrounding blanks ("" for none)."""
    return str(name).strip().lower() if name else ""


def _resolve_names(items: list, names: list, source: str) -> list:
    """1-based bands of ``names`` (band descriptions) named by ``items`` (names or numbers)."""
    keys = [band_key(n) for n in names]
    chosen, missing = [], []
    for item in items:
        text = str(item).strip()
        if text.lstrip("-").isdigit():
            chosen.append(int(text))
        elif band_key(text) in keys:
            chosen.append(keys.index(band_key(text)) + 1)
        else:
            missing.append(text)
    if missing:
        have = ", ".join(f"{i + 1} {n}" for i, n in enumerate(names) if n) or "none"
        raise CoreError(
            f"BANDS names {', '.join(missing)}, which the images do not have (band "
            f"names of '{source}': {have}). Use the images' band names or band numbers; "
            "wetlandunet:preparescene gives Planet scenes their band names."
        )
    return chosen


def select_bands(bands, count: int, source: str, names=None) -> list:
    """Return the 1-based input bands to use, checked against the image band count.

    Args:
        bands: None (all bands), "1,2,3,7", "blue,green,red,nir" (band descriptions, any
            case), or a list of band numbers or names.
        count: the images' band count.
        source: image path for messages.
        names: the images' band descriptions (None or empty: no names to pick by).

    Raises:
        CoreError: for bands out of range, repeated, or names the images lack.
    """
    if bands is None or (isinstance(bands, str) and not bands.strip()):
        return list(range(1, count + 1))
    items = (
        list(bands)
        if isinstance(bands, (list, tuple))
        else [t for t in re.split(r"[,;\s]+", str(bands).strip()) if t]
    )
    if not items:
        return list(range(1, count + 1))
    if any(not str(t).strip().lstrip("-").isdigit() for t in items):
        chosen = _resolve_names(items, list(names or []), source)
    else:
        chosen = parse_int_list(items, "BANDS")
    bad = [b for b in chosen if b < 1 or b > count]
    if bad:
        raise CoreError(
            f"BANDS {', '.join(map(str, bad))} out of range: the images have "
            f"{count} bands, numbered 1..{count} (e.g. '{source}'). Band numbers "
            "start at 1; choose bands that exist, or leave BANDS empty for all."
        )
    repeated = sorted({b for b in chosen if chosen.count(b) > 1})
    if repeated:
        raise CoreError(
            f"BANDS repeats band {', '.join(map(str, repeated))}: list each "
            "input band once, in the order the model should see them."
        )
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
    images, masks = list(images), list(masks)
    if len(images) != len(masks):
        raise CoreError(
            f"{len(images)} IMAGES but {len(masks)} MASKS: give one mask per "
            "image, in the same order."
        )
    pairs = [
        _open_pair(index, image, mask, n_classes)
        for index, (image, mask) in enumerate(zip(images, masks))
    ]
    counts = sorted({p.image_count for p in pairs})
    if len(counts) > 1:
        listing = "; ".join(f"'{p.image}': {p.image_count}" for p in pairs)
        raise CoreError(
            f"The IMAGES have different band counts ({listing}). Train on images "
            "from the same sensor with the same bands in the same order."
        )
    first = pairs[0]
    chosen = select_bands(bands, first.image_count, first.image, first.band_descriptions)
    check_band_names(pairs, chosen)
    return pairs, chosen


def check_band_names(pairs: list, chosen: list) -> None:
    """Refuse images whose chosen bands carry other names than the first image's.

    Images without band names are accepted (nothing to compare).

    Raises:
        CoreError: naming the image, the band and both names.
    """
    first = pairs[0]

    def name(pair, band):
        names = pair.band_descriptions
        return band_key(names[band - 1]) if band <= len(names) else ""

    for pair in pairs[1:]:
        for b in chosen:
            if name(first, b) and name(pair, b) and name(first, b) != name(pair, b):
                raise CoreError(
                    f"Band {b} is '{first.band_descriptions[b - 1]}' in '{first.image}' but "
                    f"'{pair.band_descriptions[b - 1]}' in '{pair.image}': the IMAGES must "
                    "have the same bands in the same order. Prepare them alike "
                    "(wetlandunet:preparescene) or train on one band layout."
                )


def _open_pair(index: int, image_path: str, mask_path: str, n_classes: int) -> PairInfo:
    """Check one pair (not the same file, same grid, a mask band count that fits N)."""
    if (
        os.path.exists(image_path)
        and os.path.exists(mask_path)
        and os.path.samefile(image_path, mask_path)
    ):
        raise CoreError(
            f"Pair {index + 1}: the mask is the image itself ('{image_path}'): "
            "give the label raster as the mask."
        )
    with open_raster(image_path, "image") as img, open_raster(mask_path, "mask") as msk:
        if not same_grid(img, msk):
            raise CoreError(
                f"Pair {index + 1}: the image '{image_path}' ({grid_description(img)}) and "
                f"the mask '{mask_path}' ({grid_description(msk)}) are not on the same "
                "pixel grid. Run wetlandunet:alignpair on this pair first and train on "
                "its outputs."
            )
        if msk.count != 1 and msk.count != n_classes:
            raise CoreError(
                f"The mask '{mask_path}' has {msk.count} bands: a mask is either one band "
                f"of class ids 1..{n_classes} (0 = unlabelled) or one-hot with one band "
                f"per class ({n_classes} bands for the {n_classes} CLASS_NAMES). Check "
                "CLASS_NAMES or the mask."
            )
        res = img.res
        return PairInfo(
            index=index,
            image=image_path,
            mask=mask_path,
            width=img.width,
            height=img.height,
            image_count=img.count,
            dtype=str(img.dtypes[0]),
            nodata=img.nodata,
            mask_count=msk.count,
            mask_nodata=msk.nodata,
            mask_kind="classes" if msk.count == 1 else "onehot",
            crs_wkt=img.crs.to_wkt() if img.crs else "",
            crs_name=str(img.crs) if img.crs else "",
            pixel_size=(float(res[0]), float(res[1])),
            band_descriptions=list(img.descriptions),
            radiometry={
                "radiometry": img.tags().get("RADIOMETRY"),
                "product_kind": img.tags().get("PRODUCT_KIND"),
            },
        )


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


def _check_fits_a_patch(pair: PairInfo, patch_size: int) -> None:
    if pair.width < patch_size or pair.height < patch_size:
        limit = min(pair.width, pair.height)
        raise CoreError(
            f"PATCH_SIZE {patch_size} is larger than the image '{pair.image}' "
            f"({pair.width} x {pair.height} px). Choose a PATCH_SIZE of at most "
            f"{limit} (a multiple of 2**DEPTH), or use larger images."
        )


def split_regions(pair: PairInfo, patch_size: int, val_fraction: float) -> PairInfo:
    """Give a pair its training part and its spatially separate validation strip.

    The validation strip is the last VAL_FRACTION of rows (at least PATCH_SIZE
    rows), with a gap of PATCH_SIZE/2 rows before it so no patch straddles both.
    An image too short for that is split along its columns instead.

    Raises:
        CoreError: when the image is smaller than a patch, or too small for both parts.
    """
    _check_fits_a_patch(pair, patch_size)
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
    raise CoreError(
        f"The image '{pair.image}' ({pair.width} x {pair.height} px) is too small "
        f"for a training part and a separate validation strip of PATCH_SIZE "
        f"{patch_size}: it needs at least {need} rows or columns. Choose a smaller "
        "PATCH_SIZE or VAL_FRACTION, or use a larger image."
    )


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
        raise CoreError(
            "VAL_SPLIT 'images' holds back whole images for validation, so it "
            f"needs at least two image/mask pairs ({len(pairs)} given). Add "
            "images, or use VAL_SPLIT 'rows' (a strip of every image)."
        )
    for pair in pairs:
        _check_fits_a_patch(pair, patch_size)
    held = set(validation_image_indices(len(pairs), val_fraction))
    for i, pair in enumerate(pairs):
        whole = Region(0, pair.height, 0, pair.width)
        if i in held:
            pair.train, pair.val, pair.split = None, whole, "validation image"
        else:
            pair.train, pair.val, pair.split = whole, None, "training image"
    return pairs


def split_pairs(
    pairs: list, val_split: str, patch_size: int, val_fraction: float, feedback: Feedback
) -> list:
    """Split every pair as VAL_SPLIT says (``split_images`` or ``split_regions``)."""
    if val_split == "images":
        split_images(pairs, patch_size, val_fraction)
        feedback.info(
            "Validation images (held back whole): "
            + ", ".join(f"'{pr.image}'" for pr in pairs if pr.train is None)
            + "."
        )
    else:
        for pair in pairs:
            split_regions(pair, patch_size, val_fraction)
    return pairs


def warn_mixed_grids(pairs: list, feedback: Feedback) -> None:
    """Warn when the images differ in pixel size or CRS (the model stores the first's)."""
    sizes = {tuple(round(v, 6) for v in p.pixel_size) for p in pairs}
    if len(sizes) > 1:
        feedback.warning(
            f"The images have different pixel sizes ({sorted(sizes)}); the model "
            "stores the first. Predict on images with a similar pixel size."
        )
    crss = {p.crs_name for p in pairs}
    if len(crss) > 1:
        feedback.warning(
            f"The images are in different CRSs ({', '.join(sorted(crss))}); the "
            "model stores the first."
        )
