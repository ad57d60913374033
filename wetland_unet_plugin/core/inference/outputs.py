"""The output rasters of a prediction: checks before work, opening, blending and writing.

Outputs are tiled deflate GeoTIFFs on the input's grid, written through
``atomic_output`` so a cancel or failure leaves nothing at the destinations:

* OUTPUT: uint8 class ids 1..N (argmax + 1), nodata 0, with a colour table;
* OUTPUT_PROBABILITIES: one band per class, described by the class name;
  ``uint8``: round(p * 254), nodata 255, band scale 1/254 so GDAL/QGIS can show
  0..1; ``float32``: p in 0..1, nodata -1;
* OUTPUT_MAP: RGBA uint8 picture in the class colours, alpha 0 where nodata;
* OUTPUT_UNCERTAINTY: float32 normalised entropy of the blended (and TTA-averaged)
  probabilities, ``-sum(q log q) / log N`` with ``q = p / sum(p)``: 0 = one class
  certain, 1 = all classes equally likely; nodata -1. With TTA > 1 a second band,
  ``tta_disagreement``: the share of the TTA transforms whose own class differs from
  the final class (their vote shares are blended like the probabilities).

``Outputs.counts`` counts pixels per class; with ``row_areas`` (a geographic grid,
see ``areas.row_pixel_areas``) ``Outputs.area_m2`` sums each row's pixel area too.

Probabilities are accumulated in a strip buffer of ``tile`` rows (``Blender``);
rows no later tile can touch are written in whole GeoTIFF block rows
(``Outputs``) and the buffer slides down by the stride, so memory does not grow
with the scene's height.
"""

from __future__ import annotations

import json
import math
import os
from contextlib import ExitStack

import numpy as np

from .. import raster as rasterlib
from ..atomic import atomic_output
from ..classes import hex_to_rgb
from ..feedback import CoreError
from .spec import ModelSpec
from .tiling import TileGrid, weight_window_1d

#: Nodata values of the outputs.
CLASS_NODATA = 0
PROB_NODATA = {"uint8": 255, "float32": -1.0}
UNCERTAINTY_NODATA = -1.0
#: uint8 probabilities are round(p * PROB_SCALE_UINT8).
PROB_SCALE_UINT8 = 254
#: Bounds of the GDAL block cache while predicting (see ``gdal_cache_bytes``).
GDAL_CACHE_MIN = 32 * 1024 * 1024
GDAL_CACHE_MAX = 512 * 1024 * 1024


def _output_bytes(
    height: int, width: int, n_classes: int, outputs: dict, probability_dtype: str
) -> dict:
    """Estimated size in bytes of each output file (path -> bytes)."""
    pixels = float(height) * width
    return {
        path: pixels * _pixel_bytes(key, n_classes, probability_dtype) * 1.05 + 1e5
        for key, path in outputs.items()
        if path
    }  # + headers, tile index


def _pixel_bytes(key: str, n_classes: int, probability_dtype: str) -> int:
    """Bytes per pixel of an output, all its bands: the class map 1, probabilities one
    band per class, the RGBA map 4 x 1, the uncertainty float32."""
    if key == "output":
        return 1
    if key == "output_probabilities":
        return n_classes * (1 if probability_dtype == "uint8" else 4)
    return 4


def check_outputs(
    outputs: dict, inputs: list, height: int, width: int, n_classes: int, probability_dtype: str
) -> None:
    """Refuse, before any work, outputs that overwrite an input or each other, sit in a
    missing or read-only folder, or do not fit on the disk.

    Raises:
        CoreError: naming the output and the fix.
    """
    seen = {}
    for key, path in outputs.items():
        if not path:
            continue
        name = key.upper()
        rasterlib.check_output_path(path, inputs, what=name)
        real = os.path.realpath(path)
        if real in seen:
            raise CoreError(
                f"{name} and {seen[real]} are the same file '{path}': give each "
                "output its own path."
            )
        seen[real] = name
    per_folder: dict = {}
    for path, size in _output_bytes(height, width, n_classes, outputs, probability_dtype).items():
        folder = os.path.dirname(os.path.abspath(path))
        per_folder[folder] = per_folder.get(folder, 0.0) + size
    for folder, size in per_folder.items():
        rasterlib.check_disk_space(os.path.join(folder, "x"), size, what="prediction outputs")


def gdal_cache_bytes(
    dataset, grid: TileGrid, n_classes: int, probability_dtype: str, outputs: dict
) -> int:
    """GDAL block cache for one prediction: the input blocks one strip touches, plus one
    block row of every output written (``outputs``: key -> path or None), plus slack;
    between ``GDAL_CACHE_MIN`` and ``_MAX``.

    GDAL's default (5% of RAM) would keep every read and written block of a large
    scene in memory; a cache sized to a strip keeps memory independent of the
    scene's height while no input block is decompressed twice.
    """
    block_rows = max(1, dataset.block_shapes[0][0])
    item = np.dtype(dataset.dtypes[0]).itemsize
    strip_block_rows = int(math.ceil(grid.tile / block_rows)) + 1
    inputs = strip_block_rows * block_rows * dataset.width * dataset.count * item
    per_pixel = sum(_pixel_bytes(k, n_classes, probability_dtype) for k, p in outputs.items() if p)
    written = int(rasterlib.GTIFF_OPTIONS["blockysize"]) * dataset.width * per_pixel
    wanted = inputs + written + 16 * 1024 * 1024
    return int(min(max(wanted, GDAL_CACHE_MIN), GDAL_CACHE_MAX))


def open_outputs(
    stack: ExitStack,
    paths: dict,
    base: dict,
    spec: ModelSpec,
    probability_dtype: str,
    votes: bool = False,
) -> dict:
    """Open every given output (key -> path) for writing through ``atomic_output``,
    tagged with the class names and colours; returns key -> dataset.

    Args:
        stack: closes the datasets and publishes or removes the files.
        paths: ``output``, ``output_probabilities``, ``output_map`` -> path or None.
        base: the GeoTIFF profile of the input's grid (``raster.gtiff_profile``).
        spec: the model's ``ModelSpec``.
        probability_dtype: one of ``PROBABILITY_DTYPES``.
        votes: the uncertainty gets the TTA disagreement as a second band.
    """
    import rasterio
    from rasterio.enums import ColorInterp

    datasets = {}
    names_tag = json.dumps(spec.class_names)
    for key, path in paths.items():
        if not path:
            continue
        tmp = stack.enter_context(atomic_output(path))
        profile = dict(base)
        if key == "output":
            profile.update(count=1, dtype="uint8", nodata=CLASS_NODATA)
        elif key == "output_probabilities":
            profile.update(
                count=spec.n_classes, dtype=probability_dtype, nodata=PROB_NODATA[probability_dtype]
            )
        elif key == "output_uncertainty":
            profile.update(count=2 if votes else 1, dtype="float32", nodata=UNCERTAINTY_NODATA)
        else:
            profile.update(count=4, dtype="uint8", nodata=None, photometric="RGB", alpha="YES")
        dst = stack.enter_context(rasterio.open(tmp, "w", **profile))
        dst.update_tags(
            class_names=names_tag,
            class_colors=json.dumps(spec.class_colors),
            software="Wetland U-Net",
        )
        if key == "output":
            dst.set_band_description(1, "class")
            colormap = {0: (0, 0, 0, 0)}
            for k, color in enumerate(spec.class_colors[: spec.n_classes]):
                colormap[k + 1] = hex_to_rgb(color) + (255,)
            dst.write_colormap(1, colormap)
        elif key == "output_probabilities":
            for k, name in enumerate(spec.class_names[: spec.n_classes]):
                dst.set_band_description(k + 1, str(name))
            if probability_dtype == "uint8":
                dst.scales = [1.0 / PROB_SCALE_UINT8] * spec.n_classes
                dst.offsets = [0.0] * spec.n_classes
        elif key == "output_uncertainty":
            dst.set_band_description(1, "uncertainty")
            if votes:
                dst.set_band_description(2, "tta_disagreement")
        else:
            dst.colorinterp = [
                ColorInterp.red,
                ColorInterp.green,
                ColorInterp.blue,
                ColorInterp.alpha,
            ]
            for k, name in enumerate(("red", "green", "blue", "alpha")):
                dst.set_band_description(k + 1, name)
        datasets[key] = dst
    return datasets


class Outputs:
    """The open output datasets; writes finished rows in block-aligned chunks."""

    def __init__(
        self,
        datasets: dict,
        spec: ModelSpec,
        probability_dtype: str,
        width: int,
        block_rows: int,
        row_areas: np.ndarray | None = None,
        votes: bool = False,
    ):
        self.datasets = datasets
        self.spec = spec
        self.probability_dtype = probability_dtype
        self.width = width
        self.block_rows = block_rows
        self.next_row = 0
        self.pending: list = []
        self.pending_rows = 0
        self.counts = np.zeros(spec.n_classes + 1, dtype=np.int64)
        self.row_areas = row_areas
        self.area_m2 = np.zeros(spec.n_classes + 1, dtype=np.float64)
        self.rows_added = 0
        self.votes = votes  # rows arrive with N vote shares after the N probabilities
        palette = np.zeros((spec.n_classes + 1, 4), dtype=np.uint8)
        for k, color in enumerate(spec.class_colors[: spec.n_classes]):
            palette[k + 1, :3] = hex_to_rgb(color)
            palette[k + 1, 3] = 255
        self.palette = palette

    def add(self, summed: np.ndarray, weights: np.ndarray, valid: np.ndarray) -> None:
        """Convert finished rows: weighted sums of probabilities (C, rows, width), their
        weights (rows, width) and validity (rows, width).

        C is N, or 2N with ``votes`` (probabilities, then vote shares). The class is the
        largest sum (dividing by a pixel's weight does not change it), so the sums are
        divided only for the outputs that hold probabilities.
        """
        n = self.spec.n_classes
        classes = argmax_planes(summed[:n])
        classes += 1
        np.multiply(classes, valid, out=classes)  # CLASS_NODATA (0) where invalid
        self.counts += np.bincount(classes.ravel(), minlength=n + 1)
        if self.row_areas is not None:
            rows = self.row_areas[self.rows_added : self.rows_added + classes.shape[0]]
            self.area_m2 += np.bincount(
                classes.ravel(), weights=np.repeat(rows, classes.shape[1]), minlength=n + 1
            )
        self.rows_added += classes.shape[0]
        chunk = {"output": classes[None]}
        if "output_probabilities" in self.datasets or "output_uncertainty" in self.datasets:
            probs = summed / np.where(weights > 0, weights, 1)
            shares = probs[n:] if self.votes else None
            probs = probs[:n]
        if "output_probabilities" in self.datasets:
            if self.probability_dtype == "uint8":
                out = np.rint(np.clip(probs, 0, 1) * PROB_SCALE_UINT8).astype(np.uint8)
            else:
                out = probs.astype(np.float32)
            out[:, ~valid] = PROB_NODATA[self.probability_dtype]
            chunk["output_probabilities"] = out
        if "output_uncertainty" in self.datasets:
            bands = [normalised_entropy(np.moveaxis(probs, 0, -1), valid)]
            if shares is not None:
                final = (classes.astype(np.intp) - 1).clip(0)[None]
                disagreement = 1.0 - np.take_along_axis(shares, final, axis=0)[0]
                disagreement = np.clip(disagreement, 0.0, 1.0).astype(np.float32)
                disagreement[~valid] = UNCERTAINTY_NODATA
                bands.append(disagreement)
            chunk["output_uncertainty"] = np.stack(bands)
        if "output_map" in self.datasets:
            chunk["output_map"] = np.moveaxis(self.palette[classes], -1, 0)
        self.pending.append(chunk)
        self.pending_rows += classes.shape[0]
        if self.pending_rows >= self.block_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self.pending:
            return
        from rasterio.windows import Window

        joined = {
            key: np.concatenate([c[key] for c in self.pending], axis=1) for key in self.pending[0]
        }
        n = self.pending_rows if final else (self.pending_rows // self.block_rows) * self.block_rows
        window = Window(0, self.next_row, self.width, n)
        for key, array in joined.items():
            self.datasets[key].write(array[:, :n], window=window)
        self.next_row += n
        rest = self.pending_rows - n
        self.pending = [{key: array[:, n:] for key, array in joined.items()}] if rest else []
        self.pending_rows = rest

    def close(self) -> None:
        """Write what is left."""
        self._flush(final=True)


def argmax_planes(planes: np.ndarray) -> np.ndarray:
    """``np.argmax(planes, axis=0)`` as uint8 (at most 256 planes), the first on ties.

    One comparison per plane over contiguous memory, and the index replaced where a
    plane is larger by arithmetic (``index ^= (index ^ k) * larger``) rather than by a
    masked assignment: several times faster than numpy's argmax over a short axis or
    ``np.putmask``, and the class output of every finished row needs it.

    Args:
        planes: (C, ...) array, C >= 1.

    Returns:
        (...) uint8 index of the largest plane per position.
    """
    best = planes[0].copy()
    index = np.zeros(best.shape, dtype=np.uint8)
    larger = np.empty(best.shape, dtype=bool)
    change = np.empty(best.shape, dtype=np.uint8)
    for k in range(1, len(planes)):
        np.greater(planes[k], best, out=larger)
        np.maximum(best, planes[k], out=best)
        np.bitwise_xor(index, k, out=change)
        np.multiply(change, larger.view(np.uint8), out=change)
        np.bitwise_xor(index, change, out=index)
    return index


def normalised_entropy(probs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Entropy of class probabilities (..., N) over log(N), float32 in 0..1, -1 where invalid.

    Probabilities are first divided by their sum (sigmoid models need not sum to 1).
    """
    n = probs.shape[-1]
    p = np.clip(probs.astype(np.float64), 0.0, None)
    total = p.sum(axis=-1, keepdims=True)
    q = p / np.where(total > 0, total, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    h = -terms.sum(axis=-1) / math.log(n) if n > 1 else np.zeros(probs.shape[:-1])
    out = np.clip(h, 0.0, 1.0).astype(np.float32)
    out[~valid] = UNCERTAINTY_NODATA
    return out


class Blender:
    """Accumulates weighted tile probabilities for one strip and hands finished rows on.

    Tiles arrive in raster order (tile row by tile row); a tile of a later row
    first finishes every earlier row (``end_row``), so batches may span rows. The
    sums are kept channel-first (C, tile, width), so weighting, the class and the
    band-interleaved outputs run over contiguous rows rather than over a short last
    axis.
    """

    #: Finished rows are converted in chunks of this many rows (bounds temporaries).
    CHUNK_ROWS = 64

    def __init__(self, grid: TileGrid, n_channels: int, outputs: Outputs):
        self.grid = grid
        self.outputs = outputs
        self.w1 = weight_window_1d(grid.tile, grid.margin, grid.ramp)
        self.windows = {1: np.outer(self.w1, self.w1)}  # k -> window of a k-tile wide tile
        full = np.flatnonzero(self.w1 == 1.0)
        # tile-local span (rows and columns) where the window is 1 and no other tile reaches
        self.alone = (int(full[0]), int(full[-1]) + 1) if full.size else (0, 0)
        self.acc = np.zeros((n_channels, grid.tile, grid.width), dtype=np.float32)
        self.weights = np.zeros((grid.tile, grid.width), dtype=np.float32)
        self.scratch = np.empty((n_channels, grid.tile, grid.tile), dtype=np.float32)
        self.valid: dict = {}  # tile row -> (tile, width) bool validity of its rows
        self.row = 0  # the tile row the buffers hold
        self.written = 0
        self.valid_pixels = 0

    def set_valid(self, i: int, valid: np.ndarray) -> None:
        """Record the validity (tile, width) of the scene rows of tile row ``i``."""
        self.valid[i] = valid

    def window(self, k: int) -> np.ndarray:
        """The (tile, width) window of a wide tile of ``k`` tiles (``tiling.merge_row``): the
        tile's rows, and columns ramped at its two ends only, which is the sum of its
        ``k`` tiles' windows (neighbours' ramps sum to 1)."""
        if k not in self.windows:
            g = self.grid
            width = (k - 1) * g.stride + g.tile
            self.windows[k] = np.outer(self.w1, weight_window_1d(width, g.margin, g.ramp))
        return self.windows[k]

    def add_batch(self, tiles: list, probs: np.ndarray) -> None:
        """Add predicted tiles with probabilities (B, rows, cols, C).

        ``tiles`` is ``[(row, col, r0, c0, k), ...]``: the box of each starts at tile-local
        row ``r0``, column ``c0`` of tile ``(row, col)`` (0, 0 for a whole tile) and spans
        ``k`` tiles (1, or a wide tile of ``tiling.merge_row``).

        Where a tile's window is 1 no other tile has weight (the ramps of neighbours
        meet only in the overlaps), so there its probabilities are copied, not weighted
        and added: most of a tile at the default overlaps.
        """
        g = self.grid
        for tile, tile_probs in zip(tiles, probs):
            i, j, r0, c0, k = tile
            while self.row < i:
                self.end_row()
            rows, cols = tile_probs.shape[:2]
            x = g.col_origin(j)  # scene column of tile-local column 0
            box = (r0, r0 + rows, max(c0, -x), min(c0 + cols, g.width - x))
            window = self.window(k)
            alone_cols = (self.alone[0], self.alone[1] + (k - 1) * g.stride)
            for (a, b, c, d), alone in _split_box(box, self.alone, alone_cols):
                probs_part = np.moveaxis(tile_probs[a - r0 : b - r0, c - c0 : d - c0], -1, 0)
                acc = self.acc[:, a:b, x + c : x + d]
                if alone:
                    acc[...] = probs_part
                    self.weights[a:b, x + c : x + d] = 1.0
                    continue
                w = window[a:b, c:d]
                if self.scratch.shape[2] < d - c:
                    self.scratch = np.empty(self.scratch.shape[:2] + (d - c,), np.float32)
                weighted = self.scratch[:, : b - a, : d - c]
                np.multiply(probs_part, w, out=weighted)
                np.add(acc, weighted, out=acc)
                self.weights[a:b, x + c : x + d] += w

    def finish(self) -> None:
        """End every remaining tile row and write what is left."""
        while self.row < self.grid.n_rows:
            self.end_row()
        self.outputs.close()

    def end_row(self) -> None:
        """Finish the current tile row: write rows no later tile reaches, slide the buffers."""
        g = self.grid
        i = self.row
        y0 = g.row_origin(i)
        last = i == g.n_rows - 1
        limit = g.height if last else min(g.height, g.row_origin(i + 1) + g.margin)
        for a in range(max(self.written, 0), limit, self.CHUNK_ROWS):
            b = min(a + self.CHUNK_ROWS, limit)
            weights = self.weights[a - y0 : b - y0]
            valid = self.valid[i][a - y0 : b - y0] & (weights > 0)
            self.valid_pixels += int(np.count_nonzero(valid))
            self.outputs.add(self.acc[:, a - y0 : b - y0], weights, valid)
            self.written = b
        del self.valid[i]
        self.row += 1
        if not last:
            s = g.stride
            for buffer in (self.acc, self.weights):  # rows are the second-last axis of both
                buffer[..., : g.tile - s, :] = buffer[..., s:, :]
                buffer[..., g.tile - s :, :] = 0


def _split_box(box: tuple, alone: tuple, alone_cols: tuple) -> list:
    """Cut a tile-local box ``(r0, r1, c0, c1)`` into the part inside ``alone x
    alone_cols`` (rows and columns where only this tile has weight) and up to four
    frame parts.

    Returns:
        ``[((r0, r1, c0, c1), inside), ...]``, empty parts left out.
    """
    a0, a1, b0, b1 = box
    f0, f1 = alone
    g0, g1 = alone_cols
    ra0, ra1 = min(max(f0, a0), a1), min(max(f1, a0), a1)
    cb0, cb1 = min(max(g0, b0), b1), min(max(g1, b0), b1)
    parts = [
        ((ra0, ra1, cb0, cb1), True),
        ((a0, ra0, b0, b1), False),
        ((ra1, a1, b0, b1), False),
        ((ra0, ra1, b0, cb0), False),
        ((ra0, ra1, cb1, b1), False),
    ]
    return [(part, inside) for part, inside in parts if part[1] > part[0] and part[3] > part[2]]
