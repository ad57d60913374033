"""Tile layout and blending weights of a scene.

The scene is cut into square tiles of ``tile`` pixels that overlap their
neighbours by ``overlap`` pixels (the stride is ``tile - overlap``, a multiple of
``2**depth`` so every tile sees the same pooling grid). Each tile's class
probabilities are weighted by a separable window and summed; the sum is divided
by the summed weights. The 1-D window over a tile of ``T`` pixels is

* ``0`` in a *dead zone* of ``margin = 3 * overlap // 8`` pixels at each edge
  (those pixels lack context, so they never count),
* a linear ramp over the next ``ramp = overlap - 2 * margin`` pixels,
* ``1`` in the centre.

The ramps of two neighbouring tiles sum to exactly 1 over their overlap, so
where the model agrees with itself the blend is the plain prediction, and where
it does not the transition is smooth: no seams. The scene is mirror-padded
(reflect) by ``pad = margin`` rounded up to a multiple of ``2**depth`` so edge
pixels get context as well.

A tile whose weighted part holds no valid pixel is skipped; one whose valid
pixels fill only part of it is cut to their bounding box plus context
(``valid_crop``). Neighbouring tiles of a row are then merged into *wide tiles*,
one model call each, where that sends fewer pixels through the model
(``merge_row``): the columns they share are computed once, and the merged tile
is weighted by the window of a tile ``k`` tiles wide, which equals the sum of its
``k`` tiles' windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..feedback import CoreError, Feedback
from ..unet import receptive_margin, tile_multiple
from .spec import ModelSpec

#: Smallest tile we accept, whatever the depth.
MIN_TILE = 16
#: Default tile size when the model's patch is smaller: larger tiles cut the share of
#: pixels computed twice in overlaps, (512 / 448)**2 = 1.31 at an overlap of 64, 1.13 at
#: 32 (see docs/decisions.md). Larger ones bought 1-2 % fewer model pixels at overlap 32
#: but twice the memory growth (benchmarks/README.md, "Near the compute limit").
DEFAULT_MIN_TILE = 512
#: Upper bound of the default overlap. The dead zone (3/8 of the overlap) and the ramp are
#: measured from a tile's edge, so the context a pixel near an edge gets does not depend
#: on the tile size: the overlap that serves 256-pixel tiles serves larger ones as well.
MAX_DEFAULT_OVERLAP = 64
#: Upper bound of the default overlap for DEPTH 3 and shallower networks (the small
#: MODEL_SIZE): a DEPTH 3 network at overlap 32 differed from a whole-scene prediction
#: less on average than the DEPTH 5 one at 64 does, and computes 15 % fewer pixels per
#: valid one than at 64 (benchmarks/README.md, "Near the compute limit").
SHALLOW_MAX_OVERLAP = 32
#: Sides of cut tiles are multiples of this many pixels (at most an eighth of the tile, at
#: least 2**depth): little computed outside the footprint, few distinct shapes. 16 px
#: computed 2 % fewer pixels on the bench scene but, with twice the shapes, held more
#: memory (benchmarks/README.md, "Near the compute limit").
CROP_STEP = 32
#: Largest wide tile (``merge_row``), in pixels: predict's CPU model calls hold at most
#: as many (``predictors.CPU_CALL_PIXELS``, two 512 px tiles), so wide tiles hold no more
#: activations than before: two 512 px tiles at overlap 32 in one 512 x 992 call. On the
#: Planet-sized bench scene 1.182 pixels went through the small model per valid pixel
#: instead of 1.212; 1 Mpx (four tiles) sent 1.165 but grew bench-predict's peak RSS from
#: a 1000 x 1000 to an 8000 x 8000 scene by 487 MB instead of 349 MB (target < 400), and
#: a call of 512 x 1952 ran as fast per pixel as batches of 512 px tiles
#: (benchmarks/README.md, "Wide tiles").
WIDE_TILE_PIXELS = 2 * 512 * 512
#: Context kept past a tile's last valid pixels (``valid_crop``), where a wider context
#: would hold only invalid pixels. Zeros at the input are not the convolutions' zero
#: padding to a trained network: with no such context the demo's model changed the class
#: of 0.73 % of the pixels within 8 px of a rotated footprint's edge against one
#: whole-scene tile, with 8 px 0.021 % (0 with the full context), for 2.9 % fewer pixels
#: through the model on that scene and 0.6 % on the Planet-sized bench scene.
EDGE_CONTEXT = 8


def default_tile_size(patch_size: int, depth: int) -> int:
    """Default TILE_SIZE: the training patch, at least ``DEFAULT_MIN_TILE`` (512), rounded
    up to 2**depth.

    Args:
        patch_size: the model's training patch size (0 when unknown).
        depth: the model's depth.
    """
    mult = tile_multiple(depth)
    size = max(int(patch_size or 0), DEFAULT_MIN_TILE)
    return int(math.ceil(size / mult) * mult)


def default_overlap(tile_size: int, depth: int) -> int:
    """Default OVERLAP: twice the model's receptive margin, at most tile/4 and at most
    ``MAX_DEFAULT_OVERLAP`` (64; ``SHALLOW_MAX_OVERLAP``, 32, for DEPTH 3 and less), a
    multiple of 2**depth (at least one 2**depth step when that fits in half a tile).

    Args:
        tile_size: the tile size.
        depth: the model's depth.
    """
    mult = tile_multiple(depth)
    cap = SHALLOW_MAX_OVERLAP if depth <= 3 else MAX_DEFAULT_OVERLAP
    wanted = min(2 * receptive_margin(depth), tile_size // 4, cap)
    overlap = (wanted // mult) * mult
    if overlap == 0 and mult <= tile_size // 2:
        overlap = mult
    return int(overlap)


@dataclass
class TileGrid:
    """Tile layout over a scene (all values in pixels, scene coordinates).

    Tile ``(i, j)`` covers rows ``row_origin(i) .. + tile`` and columns
    ``col_origin(j) .. + tile``; origins start at ``-pad`` (mirror padding).
    """

    height: int
    width: int
    tile: int
    overlap: int
    margin: int  # dead zone (weight 0) at each tile edge
    ramp: int  # linear ramp after the dead zone
    pad: int  # mirror padding at the scene edges
    n_rows: int
    n_cols: int
    multiple: int = 1  # 2**depth: tile crops start and end on this grid

    @property
    def crop_step(self) -> int:
        """Sides of cut tiles are multiples of this (``CROP_STEP``, at most an eighth of the
        tile, on the ``multiple`` grid): the predictor is one program for any shape, so
        the step only bounds the shapes a scene's kernels and buffers are set up for."""
        return max(self.multiple, min(CROP_STEP, self.tile // 8) // self.multiple * self.multiple)

    @property
    def crop_context(self) -> int:
        """Pixels kept around a tile's valid pixels when it is cropped (see ``valid_crop``):
        as many as a pixel at full weight has from a tile edge, at least ``multiple``."""
        return max(self.overlap - self.margin, self.multiple)

    @property
    def stride(self) -> int:
        """Distance between tile origins."""
        return self.tile - self.overlap

    @property
    def padded_width(self) -> int:
        """Columns spanned by one row of tiles."""
        return (self.n_cols - 1) * self.stride + self.tile

    @property
    def tiles_total(self) -> int:
        """Number of tiles in the grid."""
        return self.n_rows * self.n_cols

    def row_origin(self, i: int) -> int:
        """First scene row of tile row ``i`` (negative in the padding)."""
        return -self.pad + i * self.stride

    def col_origin(self, j: int) -> int:
        """First scene column of tile column ``j``."""
        return -self.pad + j * self.stride


def _tiles_along(size: int, tile: int, stride: int, pad: int, margin: int) -> int:
    # smallest n whose last tile's weighted part reaches the end of the scene
    reach = size + pad + margin - tile
    return 1 if reach <= 0 else int(math.ceil(reach / stride)) + 1


def plan_tiles(height: int, width: int, tile: int, overlap: int, depth: int) -> TileGrid:
    """Lay out overlapping tiles over a scene.

    Args:
        height, width: scene size in pixels.
        tile: tile size (multiple of 2**depth).
        overlap: pixels shared by neighbouring tiles (multiple of 2**depth, <= tile/2).
        depth: the model's depth.

    Returns:
        The ``TileGrid``.
    """
    mult = tile_multiple(depth)
    margin = (3 * overlap) // 8
    ramp = overlap - 2 * margin
    pad = int(math.ceil(margin / mult) * mult)
    stride = tile - overlap
    return TileGrid(
        height=height,
        width=width,
        tile=tile,
        overlap=overlap,
        margin=margin,
        ramp=ramp,
        pad=pad,
        n_rows=_tiles_along(height, tile, stride, pad, margin),
        n_cols=_tiles_along(width, tile, stride, pad, margin),
        multiple=mult,
    )


def weight_window_1d(tile: int, margin: int, ramp: int) -> np.ndarray:
    """1-D blending weights: 0 in the dead zone, linear ramp, 1 in the centre.

    Ramps of neighbouring tiles (stride ``tile - 2 * margin - ramp``) sum to 1.

    Args:
        tile: tile size.
        margin: dead zone at each edge.
        ramp: ramp length after the dead zone.

    Returns:
        (tile,) float32.
    """
    index = np.arange(tile)
    distance = np.minimum(index, tile - 1 - index).astype(np.float64)
    if ramp > 0:
        weight = np.clip((distance - margin + 0.5) / ramp, 0.0, 1.0)
    else:
        weight = (distance >= margin).astype(np.float64)
    return weight.astype(np.float32)


def weight_window(tile: int, margin: int, ramp: int) -> np.ndarray:
    """2-D separable blending window (tile, tile) float32 (see ``weight_window_1d``)."""
    w = weight_window_1d(tile, margin, ramp)
    return np.outer(w, w).astype(np.float32)


def reflect_index(indices: np.ndarray, size: int) -> np.ndarray:
    """Map indices outside ``0..size-1`` back inside by mirror reflection (edge not repeated).

    Args:
        indices: integer array, any values.
        size: axis length.

    Returns:
        Integer array of the same shape with values in ``0..size-1``.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if size == 1:
        return np.zeros_like(indices)
    period = 2 * (size - 1)
    folded = np.mod(indices, period)
    return np.where(folded >= size, period - folded, folded)


def resolve_tiling(spec: ModelSpec, tile_size, overlap, feedback: Feedback) -> tuple[int, int]:
    """Validate TILE_SIZE and OVERLAP (or pick defaults) for a model.

    Returns:
        (tile, overlap).

    Raises:
        CoreError: tile not a multiple of 2**depth or too small; overlap negative
            or more than half the tile.
    """
    mult = tile_multiple(spec.depth)
    default = default_tile_size(spec.patch_size, spec.depth)
    if tile_size in (None, 0, ""):
        tile = default
    else:
        tile = int(tile_size)
        if tile < max(MIN_TILE, 2 * mult):
            raise CoreError(
                f"TILE_SIZE {tile} is too small for this model (depth "
                f"{spec.depth}): use at least {max(MIN_TILE, 2 * mult)}, "
                f"better {default}."
            )
        if tile % mult:
            raise CoreError(
                f"TILE_SIZE {tile} is not a multiple of {mult} (2**depth for this "
                f"depth-{spec.depth} model): use "
                f"{int(math.ceil(tile / mult) * mult)} or "
                f"{max(mult, tile // mult * mult)}."
            )
    if overlap in (None, ""):
        ov = default_overlap(tile, spec.depth)
    else:
        ov = int(overlap)
        if ov < 0 or ov > tile // 2:
            raise CoreError(
                f"OVERLAP {ov} must be between 0 and half the tile size "
                f"({tile // 2}); leave it empty for the default "
                f"({default_overlap(tile, spec.depth)})."
            )
        rounded = int(round(ov / mult)) * mult
        rounded = min(rounded, (tile // 2) // mult * mult)
        if rounded != ov:
            feedback.info(
                f"OVERLAP {ov} rounded to {rounded} (a multiple of {mult}, so "
                "tiles share the model's pooling grid)."
            )
        ov = rounded
    return tile, ov


def valid_crop(
    scene_valid: np.ndarray, grid: TileGrid, i: int, j: int, crop: bool = True
) -> tuple | None:
    """The part of tile ``(i, j)`` the model must see, or None to skip the tile.

    Only the weighted part of a tile (inside its dead zones, inside the scene) is
    ever written from it, so a tile without a valid pixel there is skipped, and a
    tile whose valid pixels fill only part of it (the edge of a satellite
    footprint, a cloud mask) is cut to the bounding box of those pixels, widened by
    ``grid.crop_context`` pixels of context on every side (as much as a pixel at
    full weight has from an ordinary tile edge; invalid pixels are zeros at the
    model's input) and rounded outwards to the ``grid.multiple`` grid of the tile, so
    the pooling grid stays that of the whole tile, and its sides to multiples of
    ``grid.crop_step`` (32 px, less in small tiles), so a scene has few distinct tile
    shapes. Pixels outside the box get no weight from this tile.

    The context stops ``EDGE_CONTEXT`` pixels past the tile's last valid pixels
    (``_valid_extent``): further out it would hold only invalid pixels. At the scene's
    edges the mirrored scene stays the context.

    Args:
        scene_valid: (tile, width) bool validity of the scene rows of the tile row
            (False outside the scene), as returned by the strip reader.
        grid: the tile grid.
        i: tile row.
        j: tile column.
        crop: False returns the whole tile whenever it has a valid pixel.

    Returns:
        Tile-local ``(r0, r1, c0, c1)`` (multiples of ``grid.multiple``, sides multiples
        of ``grid.crop_step`` or the whole tile), or None.
    """
    g = grid
    x0 = g.col_origin(j)
    lo = max(0, x0 + g.margin)
    hi = min(g.width, x0 + g.tile - g.margin)
    if hi <= lo:
        return None
    core = scene_valid[g.margin : g.tile - g.margin, lo:hi]
    rows = np.flatnonzero(core.any(axis=1))
    if rows.size == 0:
        return None
    if not crop:
        return 0, g.tile, 0, g.tile
    cols = np.flatnonzero(core.any(axis=0))
    q, c, t = g.multiple, g.crop_context, g.tile
    r0 = max(0, (g.margin + int(rows[0]) - c) // q * q)
    r1 = min(t, -(-(g.margin + int(rows[-1]) + 1 + c) // q) * q)
    c0 = max(0, (lo - x0 + int(cols[0]) - c) // q * q)
    c1 = min(t, -(-(lo - x0 + int(cols[-1]) + 1 + c) // q) * q)
    e0, e1, f0, f1 = _valid_extent(scene_valid, g, i, j)
    r0, r1, c0, c1 = max(r0, e0), min(r1, e1), max(c0, f0), min(c1, f1)
    step = g.crop_step
    r0, r1 = _grow_to_step(r0, r1, step, t)
    c0, c1 = _grow_to_step(c0, c1, step, t)
    return r0, r1, c0, c1


def _valid_extent(scene_valid: np.ndarray, grid: TileGrid, i: int, j: int) -> tuple:
    """Tile-local ``(r0, r1, c0, c1)`` on the ``grid.multiple`` grid that holds every valid
    pixel of tile ``(i, j)``, dead zones included, and ``EDGE_CONTEXT`` pixels past them; a
    side where the valid pixels reach the scene's edge stays at the tile's edge (the
    mirrored scene beyond is context)."""
    g, q, t, e = grid, grid.multiple, grid.tile, EDGE_CONTEXT
    y0, x0 = g.row_origin(i), g.col_origin(j)
    lo, hi = max(0, x0), min(g.width, x0 + t)
    inside = scene_valid[:, lo:hi]
    rows = np.flatnonzero(inside.any(axis=1))
    cols = np.flatnonzero(inside.any(axis=0)) + (lo - x0)
    r0 = 0 if rows[0] == max(0, -y0) else max(0, (int(rows[0]) - e) // q * q)
    r1 = t if rows[-1] == min(t, g.height - y0) - 1 else -(-(int(rows[-1]) + 1 + e) // q) * q
    c0 = 0 if cols[0] == lo - x0 else max(0, (int(cols[0]) - e) // q * q)
    c1 = t if cols[-1] == hi - x0 - 1 else -(-(int(cols[-1]) + 1 + e) // q) * q
    return r0, min(t, r1), c0, min(t, c1)


def _grow_to_step(a: int, b: int, step: int, tile: int) -> tuple[int, int]:
    """Widen ``a..b`` to a length that is a multiple of ``step`` (or the tile), inside it."""
    size = min(tile, -(-(b - a) // step) * step)
    b = a + size
    if b > tile:
        a, b = tile - size, tile
    return a, b


def merge_row(boxes: list, grid: TileGrid, max_pixels: int = WIDE_TILE_PIXELS) -> list:
    """Merge neighbouring tiles of one tile row into wide tiles where that computes fewer
    pixels.

    Tiles are taken left to right; a tile joins the wide tile before it when they are
    neighbours, their boxes meet or overlap, the box spanning both rows and columns
    holds no more pixels than the two boxes apart (the columns they share, at least
    the overlap, are then computed once) and no more than ``max_pixels``.

    Args:
        boxes: ``valid_crop`` of each tile column of the row (None: the tile is skipped).
        grid: the tile grid.
        max_pixels: the largest wide tile (rows x columns); a single tile always passes.

    Returns:
        ``[(j, k, (r0, r1, c0, c1)), ...]`` in column order: ``k`` tiles from column ``j``
        as one box in tile ``j``'s coordinates (``c1`` up to ``(k - 1) * stride + tile``).
    """
    merged: list = []
    for j, box in enumerate(boxes):
        if box is None:
            continue
        if merged:
            j0, k, (r0, r1, c0, c1) = merged[-1]
            shift = (j - j0) * grid.stride
            a0, a1, b0, b1 = box
            if j0 + k == j and b0 + shift <= c1:
                rows = max(r1, a1) - min(r0, a0)
                area = rows * (b1 + shift - c0)
                if area <= min((r1 - r0) * (c1 - c0) + (a1 - a0) * (b1 - b0), max_pixels):
                    merged[-1] = (j0, k + 1, (min(r0, a0), max(r1, a1), c0, b1 + shift))
                    continue
        merged.append((j, 1, box))
    return merged
