"""Reader thread -> model (calling thread) -> writer thread, joined by one-slot queues.

A reader thread reads and validates strips, normalises tiles and fills batches
of tiles of one shape (whole tiles first, so their batches span tile rows and
are full) while the model runs; a writer thread blends and writes; the calling
thread only runs the model, checks cancel and reports progress between batches,
so feedback is always used from the caller's thread.
"""

from __future__ import annotations

import queue
import threading
from contextlib import contextmanager

import numpy as np

from ..feedback import CoreError, Feedback
from ..normalize import check_finite
from .outputs import Blender
from .reader import StripReader
from .tiling import TileGrid, merge_row, valid_crop


def _hugepage_setter():
    """numpy's switch for its huge-page hint (``_set_madvise_hugepage``), or None."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 1.25
        from numpy.core import multiarray
    return getattr(multiarray, "_set_madvise_hugepage", None)


@contextmanager
def small_pages():
    """Run a block with numpy's huge-page hint off, then restore it.

    On Linux numpy asks for transparent huge pages for arrays of 4 MB and more. A
    prediction allocates and frees such arrays for every strip, batch and chunk of
    rows, and each fresh 2 MB page is zeroed in the kernel when first touched: on the
    8000 x 4000 bench scene that was 0.8-2.1 s of system time per run (the pipeline's
    own CPU with a constant predictor, 2-CPU VM) and 0.26-0.54 s without the hint,
    user time unchanged (docs/decisions.md). Nothing else changes: the hint only
    affects how the kernel backs new allocations.
    """
    setter = _hugepage_setter()
    previous = setter(False) if setter else None
    try:
        yield
    finally:
        if setter:
            setter(previous)


class _StopError(Exception):
    """The run is stopping (another thread failed, or the caller is done): leave quietly."""


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _StopError()
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise _StopError()
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def _io_error(err: BaseException, what: str, advice: str) -> BaseException:
    """Turn a GDAL/OS error raised in a pipeline thread into a CoreError that says what to do."""
    from rasterio.errors import RasterioError

    if isinstance(err, (RasterioError, OSError)) and not isinstance(err, CoreError):
        return CoreError(f"{what}: {err}. {advice}")
    return err


def _reader_main(
    reader: StripReader,
    grid: TileGrid,
    batch_size: int,
    out: queue.Queue,
    stop: threading.Event,
    errors: list,
    crop: bool = True,
    merge: bool = True,
) -> None:
    """Read strips, skip tiles without valid pixels, cut the others to their valid part
    (``valid_crop``), merge neighbours into wide tiles (``merge_row``) and send batches
    of tiles of one shape.

    Whole tiles come first in each tile row, so their batches span rows and are
    full; cut and wide tiles are batched with the tiles of their row that have the
    same shape (the blender takes a row's tiles in any order, rows in order). A wide
    tile is a batch of its own: it already holds as many pixels as a model call.

    Messages: ("row", i, valid, n_skipped) once per tile row, before any of its
    tiles; ("batch", [(i, j, r0, c0, k), ...], array); ("done",).
    """
    try:
        g = grid
        whole = (0, g.tile, 0, g.tile)
        tiles: list = []
        batch = None
        for i in range(g.n_rows):
            strip, strip_valid, valid = reader.read(i)
            boxes = [valid_crop(valid, g, i, j, crop) for j in range(g.n_cols)]
            todo = (
                merge_row(boxes, g)
                if crop and merge
                else [(j, 1, box) for j, box in enumerate(boxes) if box is not None]
            )
            _put(out, ("row", i, valid, boxes.count(None)), stop)
            # whole tiles first, then cut and wide tiles grouped by shape (stable: raster order)
            todo.sort(
                key=lambda item: (
                    item[2] != whole,
                    item[2][1] - item[2][0],
                    item[2][3] - item[2][2],
                )
            )
            for j, k, box in todo:
                r0, r1, c0, c1 = box
                if batch is not None and batch.shape[1:3] != (r1 - r0, c1 - c0):
                    _put(out, ("batch", tiles, batch[: len(tiles)]), stop)
                    tiles, batch = [], None
                if batch is None:
                    slots = 1 if k > 1 else batch_size
                    batch = np.empty((slots, r1 - r0, c1 - c0, strip.shape[0]), np.float32)
                reader.tile(strip, strip_valid, j, box, out=batch[len(tiles)])
                tiles.append((i, j, r0, c0, k))
                if len(tiles) == len(batch):
                    _put(out, ("batch", tiles, batch), stop)
                    tiles, batch = [], None
            del strip, strip_valid
        if tiles:
            _put(out, ("batch", tiles, batch[: len(tiles)]), stop)
        _put(out, ("done",), stop)
    except _StopError:
        pass
    except BaseException as err:  # handed to the main thread
        errors.append(
            _io_error(
                err,
                "Reading the input scene failed",
                "The file may be corrupt or truncated; check it with "
                "gdalinfo -checksum, or export it again.",
            )
        )
        stop.set()
    finally:
        reader.close()


def _writer_main(blender: Blender, inbox: queue.Queue, stop: threading.Event, errors: list) -> None:
    try:
        while True:
            item = _get(inbox, stop)
            kind = item[0]
            if kind == "row":
                blender.set_valid(item[1], item[2])
            elif kind == "batch":
                blender.add_batch(item[1], item[2])
            elif kind == "done":
                blender.finish()
                return
    except _StopError:
        pass
    except BaseException as err:
        errors.append(
            _io_error(
                err,
                "Writing the outputs failed",
                "Check free disk space and write permission of the output folder.",
            )
        )
        stop.set()


def run_pipeline(
    reader: StripReader,
    blender: Blender,
    predictor,
    grid: TileGrid,
    batch_size: int,
    feedback: Feedback,
    crop: bool = True,
    merge: bool = True,
) -> dict:
    """Run reader thread -> model (this thread) -> writer thread; return tile counts.

    Args:
        reader: the scene's strip reader (closed by the reader thread).
        blender: blends and writes the predicted tiles.
        predictor: ``f(batch) -> probabilities`` (``predictors.get_predictor``).
        grid: the tile grid.
        batch_size: tiles per model call.
        feedback: progress and cancel, used from this thread only.
        crop: cut tiles to their valid part (``valid_crop``) and merge neighbours into
            wide tiles (``merge_row``); False sends whole tiles.
        merge: with ``crop``, merge neighbours into wide tiles; False keeps tiles apart.

    Returns:
        dict with ``tiles_predicted``, ``tiles_skipped``, ``model_pixels``, ``model_calls``.
    """
    stop = threading.Event()
    errors: list = []
    # one batch waiting each way: the model takes far longer than reading or blending a
    # batch, and every batch waiting is memory (see docs/decisions.md)
    to_model: queue.Queue = queue.Queue(maxsize=1)
    to_writer: queue.Queue = queue.Queue(maxsize=1)
    threads = [
        threading.Thread(
            target=_reader_main,
            name="wetland-read",
            daemon=True,
            args=(reader, grid, batch_size, to_model, stop, errors, crop, merge),
        ),
        threading.Thread(
            target=_writer_main,
            name="wetland-write",
            daemon=True,
            args=(blender, to_writer, stop, errors),
        ),
    ]
    for thread in threads:
        thread.start()
    predicted = skipped = pixels = calls = 0
    finished = False
    try:
        while True:
            item = _get(to_model, stop)
            kind = item[0]
            feedback.check_canceled()
            if kind == "batch":
                probs = predictor(check_finite(item[2], "prediction tiles"))
                _put(to_writer, (kind, item[1], probs), stop)
                predicted += sum(tile[4] for tile in item[1])
                pixels += int(np.prod(item[2].shape[:3]))
                calls += 1
            else:
                if kind == "row":
                    skipped += item[3]
                _put(to_writer, item, stop)
                if kind == "done":
                    break
            feedback.progress((predicted + skipped) / max(grid.tiles_total, 1))
        threads[1].join()
        finished = not errors
    except _StopError:
        pass
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    if not finished:
        raise RuntimeError("prediction pipeline stopped early without an error")
    return {
        "tiles_predicted": predicted,
        "tiles_skipped": skipped,
        "model_pixels": pixels,
        "model_calls": calls,
    }
