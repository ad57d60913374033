"""Minimum mapping unit on class maps of any size: patch merging in row strips.

``merge_small_patches`` applies cleanmap's rule (every patch smaller than its
class's unit takes the class of the neighbouring patch it shares the longest
border with) to a class map held in any array that can be sliced by rows: a
numpy array, or a ``DiskArray`` (a raw scratch file) for maps larger than memory. Only
one strip of rows is in memory at a time (``strip_rows``), plus arrays of a few
numbers per patch.

A pass:

1. **Labels** (one sweep): every strip is labelled on its own
   (``scipy.ndimage.label``, one numbering for all classes); the labels of
   patches that continue across the border of two strips are joined by a graph
   of the touching pixel pairs (``scipy.sparse.csgraph.connected_components``).
   Patches are then numbered canonically, by class and then by their first
   pixel in raster order, which is exactly the numbering of labelling the whole
   map at once, so results never depend on the strip height.
2. **Borders** (one sweep): the pairs of neighbouring pixels of a small patch
   and another classified patch, counted per pair of patches (each strip with
   one row of the strip above, whose pairs within that row are not counted
   twice).
3. **Decisions**: every small patch moves at once into one allowed neighbour: a
   stable patch (at least its own unit) when it has one, else a small patch
   that is larger (size, then label, breaks ties), so no two patches swap and
   every pass removes at least one patch; among those, the longest border, then
   the larger patch, then the higher label wins.
4. **Apply** (one sweep): the new classes are written back.

Passes repeat until no patch is below its unit; a small patch without any
classified neighbour (an island in nodata) cannot merge and is kept.
"""

from __future__ import annotations

import numpy as np

from .feedback import Feedback

#: Safety stop for the merge passes (each pass removes at least one patch; real maps
#: need a handful).
MAX_PASSES = 200
#: Pixels per strip: about 20 bytes per pixel are in use while a strip is labelled
#: (class ids, labels, masks), so 4 M pixels keep a strip near 80 MB at any width.
STRIP_PIXELS = 4_000_000


class DiskArray:
    """A 2-D array in a raw scratch file, read and written by whole rows.

    Not memory-mapped: rows go through ordinary file reads and writes, so the pages
    are the operating system's cache, not the process's memory (a memory map's pages
    count as the process's resident memory once touched).

    Args:
        path: the scratch file (created or truncated).
        shape: ``(rows, columns)``.
        dtype: numpy dtype of the values (zero-filled).
    """

    def __init__(self, path: str, shape, dtype):
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._file = open(path, "w+b")
        self._file.truncate(self.shape[0] * self._row_bytes)

    def _rows(self, key: slice) -> tuple:
        start, stop, step = key.indices(self.shape[0])
        if step != 1:
            raise ValueError("DiskArray reads and writes runs of whole rows only")
        self._file.seek(start * self._row_bytes)
        return start, max(start, stop)

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop = self._rows(key)
        out = np.empty((stop - start, self.shape[1]), dtype=self.dtype)
        self._file.readinto(memoryview(out).cast("B"))
        return out

    def __setitem__(self, key: slice, value) -> None:
        start, stop = self._rows(key)
        block = np.ascontiguousarray(np.broadcast_to(value, (stop - start, self.shape[1])))
        self._file.write(memoryview(block.astype(self.dtype, copy=False)).cast("B"))

    def close(self) -> None:
        self._file.close()


def strip_height(width: int, strip_rows: int | None = None) -> int:
    """Rows per strip: ``strip_rows`` when given, else about ``STRIP_PIXELS`` pixels."""
    if strip_rows:
        return max(1, int(strip_rows))
    return max(16, STRIP_PIXELS // max(1, width))


def label_dtype(shape) -> np.dtype:
    """int32 labels, or int64 when the map has more pixels than int32 can number."""
    return np.dtype(np.int32) if shape[0] * shape[1] < 2**31 - 1 else np.dtype(np.int64)


def label_block(classes: np.ndarray, n_classes: int, connectivity: int, dtype=np.int32):
    """Label the patches of every class of an in-memory block with one numbering.

    Returns:
        ``labels`` (0 on nodata; class 1's patches first, each class in raster order of
        its patches' first pixels), ``patch_class`` (class id per label, index 0 = 0),
        ``sizes`` (pixels per label).
    """
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels = np.zeros(classes.shape, dtype=dtype)
    patch_class = [np.zeros(1, dtype=np.int64)]
    offset = 0
    for k in range(1, n_classes + 1):
        mask = classes == k
        if not mask.any():
            continue
        lab, n = ndimage.label(mask, structure=structure, output=dtype)
        np.add(lab, offset, out=lab, where=mask)  # in place: no block-sized temporaries
        labels += lab  # lab is 0 outside this class, labels is 0 inside it
        del lab
        patch_class.append(np.full(n, k, dtype=np.int64))
        offset += n
    sizes = np.bincount(labels.ravel(), minlength=offset + 1)
    return labels, np.concatenate(patch_class), sizes


def _touching(prev_cls, prev_lab, cls, lab, connectivity: int):
    """Label pairs of same-class pixels across the border of two strips."""
    pairs = [(slice(None), slice(None))]
    if connectivity == 8:
        pairs += [(slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))]
    a, b = [], []
    for above, below in pairs:
        same = (prev_cls[above] == cls[below]) & (cls[below] > 0)
        a.append(prev_lab[above][same])
        b.append(lab[below][same])
    return np.concatenate(a), np.concatenate(b)


def label_strips(classes, labels, n_classes: int, connectivity: int, rows: int, feedback):
    """Label ``classes`` into ``labels`` strip by strip (provisional numbers).

    Returns:
        ``root`` (provisional label -> canonical label, 0 -> 0), ``patch_class`` and
        ``sizes`` per canonical label.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    height = classes.shape[0]
    classes_of, sizes_of, edges_a, edges_b = (
        [np.zeros(1, np.int64)],
        [np.zeros(1, np.int64)],
        [],
        [],
    )
    offset, prev = 0, None
    for r0 in range(0, height, rows):
        feedback.check_canceled()
        cls = np.asarray(classes[r0 : r0 + rows])
        lab, patch_class, sizes = label_block(cls, n_classes, connectivity, labels.dtype)
        np.add(lab, offset, out=lab, where=lab > 0)
        labels[r0 : r0 + rows] = lab
        if prev is not None:
            a, b = _touching(prev[0], prev[1], cls[0], lab[0], connectivity)
            edges_a.append(a)
            edges_b.append(b)
        prev = (cls[-1].copy(), lab[-1].copy())
        classes_of.append(patch_class[1:])
        sizes_of.append(sizes[1:])
        offset += len(patch_class) - 1
    prov_class = np.concatenate(classes_of)
    prov_sizes = np.concatenate(sizes_of)
    a = np.concatenate(edges_a) if edges_a else np.zeros(0, np.int64)
    b = np.concatenate(edges_b) if edges_b else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(a.size, np.int8), (a - 1, b - 1)), shape=(offset, offset))
    n, comp = connected_components(graph, directed=False)
    # canonical order: class, then the first (smallest) provisional label, which within
    # a class is the raster order of the patch's first pixel
    _, first = np.unique(comp, return_index=True)
    order = np.lexsort((first, prov_class[1:][first]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    root = np.zeros(offset + 1, dtype=labels.dtype)
    root[1:] = rank[comp]
    patch_class = np.zeros(n + 1, dtype=np.int64)
    patch_class[root[1:]] = prov_class[1:]
    sizes = np.bincount(root, weights=prov_sizes, minlength=n + 1).astype(np.int64)
    sizes[0] = 0
    return root, patch_class, sizes


def _neighbour_pairs(labels: np.ndarray, small: np.ndarray, connectivity: int, skip_top: bool):
    """(patch, neighbour) label pairs of neighbouring pixels, patch small, both classified.

    ``skip_top``: the first row belongs to the strip above, whose pairs within that row
    were counted there.
    """
    shifts = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if connectivity == 8 else [])
    height, width = labels.shape
    parts_a, parts_b = [], []
    for dy, dx in shifts:
        top = 1 if skip_top and dy == 0 else 0
        a = labels[top : height - dy, max(0, -dx) : width - max(0, dx)]
        b = labels[top + dy :, max(0, dx) : width - max(0, -dx)]
        for x, y in ((a, b), (b, a)):
            keep = (x != y) & small[x] & (y > 0)
            parts_a.append(x[keep])
            parts_b.append(y[keep])
    return np.concatenate(parts_a).astype(np.int64), np.concatenate(parts_b).astype(np.int64)


def border_counts(labels, root, small: np.ndarray, connectivity: int, rows: int, feedback):
    """Shared border (pixel pairs) of every small patch with each classified neighbour.

    Returns:
        ``(patch, neighbour, border)`` arrays, one entry per pair of patches.
    """
    base = len(small) + 1
    keys, counts = [], []
    for r0 in range(0, labels.shape[0], rows):
        feedback.check_canceled()
        top = max(0, r0 - 1)
        block = root[np.asarray(labels[top : r0 + rows])]
        a, b = _neighbour_pairs(block, small, connectivity, skip_top=r0 > 0)
        key, count = np.unique(a * base + b, return_counts=True)
        keys.append(key)
        counts.append(count)
    key, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    border = np.bincount(inverse, weights=np.concatenate(counts)).astype(np.int64)
    return key // base, key % base, border


def merge_small_patches(
    classes, labels, min_pixels: np.ndarray, connectivity: int, feedback=None, strip_rows=None
):
    """Merge patches below their class's unit into the neighbour of the longest border.

    Args:
        classes: 2-D uint8 class ids (0 = nodata), sliceable by rows (array or DiskArray);
            overwritten with the cleaned map.
        labels: integer array of the same shape (``label_dtype``), overwritten with
            provisional patch labels; ``root[labels]`` are the cleaned map's patches.
        min_pixels: smallest patch kept per class id (index 0 unused; 0 = any size).
        connectivity: 4 or 8.
        feedback: for cancel and warnings.
        strip_rows: rows per strip (default: about ``STRIP_PIXELS`` pixels).

    Returns:
        ``(root, patch_class, stats)``: provisional -> final patch label, the class of
        each final patch, and ``{"merged", "passes", "isolated"}``.
    """
    feedback = feedback or Feedback()
    rows = strip_height(classes.shape[1], strip_rows)
    n_classes = len(min_pixels) - 1
    stats = {"merged": 0, "passes": 0, "isolated": 0}
    for _ in range(MAX_PASSES):
        root, patch_class, sizes = label_strips(
            classes, labels, n_classes, connectivity, rows, feedback
        )
        small = sizes < min_pixels[patch_class]
        small[0] = False
        if not small.any():
            stats["isolated"] = 0
            return root, patch_class, stats
        pa, pb, border = border_counts(labels, root, small, connectivity, rows, feedback)
        bigger = (sizes[pb] > sizes[pa]) | ((sizes[pb] == sizes[pa]) & (pb > pa))
        allowed = ~small[pb] | bigger
        pa, pb, border = pa[allowed], pb[allowed], border[allowed]
        stats["isolated"] = int(small.sum() - np.unique(pa).size)
        if pa.size == 0:
            return root, patch_class, stats
        # per patch the last of: stable neighbours first, then longest border, then size, label
        order = np.lexsort((pb, sizes[pb], border, ~small[pb], pa))
        pa, pb = pa[order], pb[order]
        last = np.r_[pa[1:] != pa[:-1], True]
        new_class = patch_class.copy()
        new_class[pa[last]] = patch_class[pb[last]]
        lookup = new_class.astype(np.uint8)[root]  # provisional label -> new class
        for r0 in range(0, classes.shape[0], rows):
            feedback.check_canceled()
            classes[r0 : r0 + rows] = lookup[np.asarray(labels[r0 : r0 + rows])]
        stats["merged"] += int(last.sum())
        stats["passes"] += 1
        feedback.progress(min(0.6, 0.6 * stats["passes"] / (stats["passes"] + 1)))
    root, patch_class, _ = label_strips(classes, labels, n_classes, connectivity, rows, feedback)
    feedback.warning(f"Stopped merging after {MAX_PASSES} passes; some small patches remain.")
    return root, patch_class, stats
