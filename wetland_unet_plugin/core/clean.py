"""Clean a raster: NaN, +-Inf, its nodata and listed values become nodata, or get filled.

Invalid values (-1, NaN, nodata borders) must never reach the network.
``clean_invalid`` finds them in any raster (images and class masks, any band
count, any numeric type), counts them and either marks them as nodata, fills
them with a constant, or interpolates them from their neighbours. Valid values
are copied bit for bit. The raster is streamed in blocks, so a 20000 x 20000
scene is never in memory whole, and the output appears only when complete.

Decisions (documented for users in the algorithm's help):

* Invalid = non-finite (NaN, +Inf, -Inf; floating types only), the input's
  nodata value, and every value of ``invalid_values`` that the data type can
  hold (``"-1"`` by default; -1 cannot occur in an unsigned raster and is
  skipped there, with a log line).
* Counts are per band: ``per_band[i]`` is the number of pixels of band i+1
  that were invalid; ``invalid_count`` is their sum (the number of values
  replaced, pixel x band); ``invalid_pixels`` is the number of pixels where at
  least one band was invalid. Bands are cleaned independently: a valid value
  of one band is kept even where another band of the same pixel is invalid.
* Output nodata (modes ``nodata`` and ``interpolate``): the ``nodata``
  argument when given; else the input's nodata; else the first listed invalid
  value the type can hold (-1 by default); else -9999 for floating types. An
  integer raster without nodata and without a usable listed value cannot hold
  invalid values, so its output gets no nodata value.
* Mode ``constant`` writes ``fill_value`` into invalid values; the output has
  no nodata value unless ``nodata`` is given (every pixel then holds data).
* Mode ``interpolate`` first marks invalid values as nodata, then fills them
  per band with GDAL's FillNodata (inverse-distance interpolation from the
  nearest valid values, searching up to ``max_distance`` pixels); values
  farther than that from any valid value stay nodata and are reported.
  Interpolation blends neighbouring values, so it suits images, not class
  masks (use ``nodata`` there).
"""

from __future__ import annotations

import math

import numpy as np
import rasterio

from .atomic import atomic_output
from .classes import parse_float_list
from .feedback import Canceled, CoreError, Feedback, SubFeedback
from .raster import (
    check_output_path,
    chunk_windows,
    copy_metadata,
    gtiff_profile,
    open_raster,
    valid_pixels,
)
from .schema import CLEAN

#: Output nodata for a floating-point raster that has none and no listed value.
FLOAT_FALLBACK_NODATA = -9999.0


def representable(value: float, dtype) -> bool:
    """True when ``value`` can be stored exactly in ``dtype`` (NaN/Inf only in floats)."""
    dtype = np.dtype(dtype)
    value = float(value)
    if np.issubdtype(dtype, np.floating):
        return math.isnan(value) or math.isinf(value) or abs(value) <= float(np.finfo(dtype).max)
    if not math.isfinite(value) or value != math.floor(value):
        return False
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


def _is_nan(value) -> bool:
    return value is not None and isinstance(value, float) and math.isnan(value)


def _parse_optional_number(value, what: str):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CoreError(
            f"{what} '{value}' is not a number: give a number such as -9999, or leave it empty."
        ) from None


def _format(value) -> str:
    if value is None:
        return "none"
    value = float(value)
    if math.isnan(value):
        return "NaN"
    return f"{value:g}" if value != math.floor(value) or abs(value) > 1e15 else str(int(value))


def _as_json_number(value, dtype):
    if value is None:
        return None
    if np.issubdtype(np.dtype(dtype), np.integer):
        return int(value)
    return float(value)


def invalid_mask(data: np.ndarray, values) -> np.ndarray:
    """Boolean array of ``data``'s shape: True where a value is non-finite or in ``values``.

    Args:
        data: any numeric array.
        values: numbers that count as invalid; each must be representable in
            ``data.dtype`` (NaN entries are covered by the non-finite test).
    """
    # Non-finite values, each judged on its own: valid_pixels treats axis 0 as the bands of
    # one pixel, so ``data`` goes in as a single stack.
    bad = ~valid_pixels(data[np.newaxis])
    for value in values:
        if _is_nan(float(value)):
            continue
        bad |= data == np.asarray(value, dtype=data.dtype)
    return bad


def clean_invalid(input=None, output=None, *, feedback=None, **params) -> dict:
    """Make NaN, +-Inf, the raster's nodata and listed values nodata, or fill them.

    Args:
        feedback: a :class:`Feedback` for progress, log and cancel.
        **params: the parameters of ``schema.CLEAN`` by keyword: ``input`` (any band
            count and numeric type; images or masks), ``output`` (GeoTIFF, tiled,
            compressed, written atomically), ``invalid_values`` (besides NaN/Inf/nodata,
            as text ``"-1, 65535"`` or a list; empty for none), ``mode`` (nodata,
            constant or interpolate), ``fill_value`` (mode constant), ``nodata`` (the
            output's; default: see docs/decisions.md), ``max_distance`` (mode
            interpolate: how far, in pixels, to search for valid values).

    Returns:
        ``{"output", "mode", "nodata", "fill_value", "invalid_values",
        "invalid_count", "invalid_pixels", "per_band", "unfilled",
        "width", "height", "bands"}``; ``nodata`` is None when the output has
        none (NaN when the input's nodata is NaN); ``unfilled`` (interpolate
        only) counts values left as nodata per band.

    Raises:
        CoreError: on unreadable input, an output that is the input, a fill or
            nodata value the data type cannot hold; Canceled when canceled.
    """
    feedback = feedback or Feedback()
    p = CLEAN.check(dict(params, input=input, output=output))
    input, output, mode = p["input"], p["output"], p["mode"]
    fill_value, max_distance = p["fill_value"], p["max_distance"]
    listed = parse_float_list(p["invalid_values"], "INVALID_VALUES") or []
    explicit_nodata = _parse_optional_number(p["nodata"], "NODATA")
    check_output_path(output, [input], "output")

    with open_raster(input, "input raster") as src:
        dtypes = {np.dtype(d) for d in src.dtypes}
        if any(np.issubdtype(d, np.complexfloating) for d in dtypes):
            raise CoreError(
                f"The input '{input}' holds complex numbers: cleaning works on real "
                "bands; convert it (e.g. with the raster calculator) first."
            )
        dtype = np.result_type(*dtypes) if len(dtypes) > 1 else next(iter(dtypes))
        if dtype == np.dtype(bool):
            dtype = np.dtype(np.uint8)
        src_nodata = src.nodata
        if src_nodata is not None and not representable(src_nodata, dtype):
            feedback.warning(
                f"The input's nodata value {_format(src_nodata)} cannot occur in "
                f"{dtype.name} data; it is ignored."
            )
            src_nodata = None

        usable, skipped = [], []
        for value in listed:
            (usable if representable(value, dtype) else skipped).append(value)
        if skipped:
            feedback.info(
                f"Listed invalid value(s) {', '.join(_format(v) for v in skipped)} "
                f"cannot occur in {dtype.name} data and are skipped."
            )
        invalid_set = list(usable)
        if src_nodata is not None:
            invalid_set.append(src_nodata)
        dedup = []
        for value in invalid_set:
            if not any(value == d or (_is_nan(value) and _is_nan(d)) for d in dedup):
                dedup.append(value)
        invalid_set = dedup

        # Output nodata and the replacement value of invalid values.
        fill = None
        if explicit_nodata is not None and not representable(explicit_nodata, dtype):
            raise CoreError(
                f"NODATA {_format(explicit_nodata)} cannot be stored in this "
                f"{dtype.name} raster: choose a value in its range."
            )
        if mode == "constant":
            fill_number = _parse_optional_number(fill_value, "FILL_VALUE")
            if fill_number is None:
                raise CoreError(
                    "Mode constant needs a FILL_VALUE: give the number to write "
                    "into invalid values, e.g. 0."
                )
            if not representable(fill_number, dtype) or (
                not np.issubdtype(dtype, np.floating) and not math.isfinite(fill_number)
            ):
                raise CoreError(
                    f"FILL_VALUE {_format(fill_number)} cannot be stored in this "
                    f"{dtype.name} raster: choose a whole number in "
                    f"{np.iinfo(dtype).min}..{np.iinfo(dtype).max}."
                    if np.issubdtype(dtype, np.integer)
                    else f"FILL_VALUE {_format(fill_number)} cannot be stored in this "
                    f"{dtype.name} raster: choose a smaller number."
                )
            fill = fill_number
            out_nodata = explicit_nodata
            how = f"filled with {_format(fill)}"
        else:
            if explicit_nodata is not None:
                out_nodata, why = explicit_nodata, "as asked"
            elif src_nodata is not None:
                out_nodata, why = src_nodata, "the input's nodata value"
            elif any(not _is_nan(v) for v in usable):
                out_nodata = next(v for v in usable if not _is_nan(v))
                why = "the first listed invalid value"
            elif np.issubdtype(dtype, np.floating):
                out_nodata, why = FLOAT_FALLBACK_NODATA, "the input has none"
            else:
                out_nodata, why = None, ""
            fill = out_nodata
            if out_nodata is None:
                feedback.info(
                    f"This {dtype.name} raster has no nodata value and no listed "
                    "invalid value can occur in it, so it has no invalid values; "
                    "the output gets no nodata value."
                )
            else:
                feedback.info(f"Output nodata value: {_format(out_nodata)} ({why}).")
            how = "made nodata"
        # Valid values that equal the output nodata would silently turn into nodata.
        watch_collision = (
            out_nodata is not None
            and not any(
                out_nodata == v or (_is_nan(out_nodata) and _is_nan(v)) for v in invalid_set
            )
            and not _is_nan(out_nodata)
        )

        kinds = (["NaN, +Inf, -Inf"] if np.issubdtype(dtype, np.floating) else []) + [
            _format(v) for v in invalid_set if not _is_nan(v)
        ]
        if kinds:
            feedback.info("Invalid: " + ", ".join(kinds) + f"; they are {how}.")

        count = src.count
        per_band = np.zeros(count, dtype=np.int64)
        invalid_pixels = 0
        collisions = 0
        profile = gtiff_profile(src, count=count, dtype=dtype.name, nodata=out_nodata)

        steps = SubFeedback(feedback, 0.0, 0.6 if mode == "interpolate" else 1.0)
        total = float(src.width) * src.height
        done = 0.0
        replacement = None if fill is None else np.asarray(fill, dtype=dtype)
        unfilled = None
        with atomic_output(output) as tmp:
            with rasterio.open(tmp, "w", **profile) as dst:
                copy_metadata(src, dst)
                for window in chunk_windows(src.width, src.height, count * dtype.itemsize):
                    feedback.check_canceled()
                    data = src.read(window=window, out_dtype=dtype)
                    bad = invalid_mask(data, invalid_set)
                    band_counts = bad.sum(axis=(1, 2))
                    per_band += band_counts
                    if band_counts.any():
                        invalid_pixels += int(bad.any(axis=0).sum())
                        data[bad] = replacement
                    if watch_collision:
                        collisions += int(((data == replacement) & ~bad).sum())
                    dst.write(data, window=window)
                    done += window.width * window.height
                    steps.progress(done / total)
            if mode == "interpolate" and out_nodata is not None and per_band.any():
                unfilled = _interpolate(
                    tmp, per_band, out_nodata, max_distance, SubFeedback(feedback, 0.6, 1.0)
                )
            feedback.check_canceled()
    feedback.progress(1.0)

    invalid_count = int(per_band.sum())
    for index, value in enumerate(per_band, start=1):
        feedback.info(
            f"Band {index}: {int(value):,} invalid value(s) {how}"
            + (
                f", {unfilled[index - 1]:,} left as nodata (farther than "
                f"{max_distance} px from valid data)"
                if unfilled
                else ""
            )
            + "."
        )
    feedback.info(
        f"Invalid values in all: {invalid_count:,} ({invalid_pixels:,} pixel(s) with "
        "at least one invalid band)."
    )
    if collisions:
        feedback.warning(
            f"{collisions:,} valid value(s) equal the output nodata value "
            f"{_format(out_nodata)} and now read as nodata: give another NODATA "
            "value that does not occur in the data."
        )
    return {
        "output": output,
        "mode": mode,
        "nodata": _as_json_number(out_nodata, dtype),
        "fill_value": _as_json_number(fill, dtype) if mode == "constant" else None,
        "invalid_values": [_as_json_number(v, dtype) for v in invalid_set],
        "invalid_count": invalid_count,
        "invalid_pixels": int(invalid_pixels),
        "per_band": [int(v) for v in per_band],
        "unfilled": unfilled,
        "nodata_collisions": int(collisions),
        "width": int(profile["width"]),
        "height": int(profile["height"]),
        "bands": int(count),
    }


def _interpolate(path, per_band, nodata, max_distance, feedback) -> list:
    """Fill nodata of each band of ``path`` in place with GDAL FillNodata.

    Returns:
        per band, the number of values still nodata afterwards.
    """
    from osgeo import gdal

    errors = []

    def handler(err_class, _err_no, message):
        if err_class >= gdal.CE_Failure:
            errors.append(message)

    bands_to_fill = [i for i, n in enumerate(per_band, start=1) if n]
    gdal.PushErrorHandler(handler)
    try:
        dataset = gdal.Open(path, gdal.GA_Update)
        if dataset is None:
            raise CoreError(f"Could not reopen the output for interpolation: {'; '.join(errors)}")
        try:
            for step, index in enumerate(bands_to_fill):
                feedback.check_canceled()
                start = step / len(bands_to_fill)
                span = 0.9 / len(bands_to_fill)

                def callback(complete, _message, _data, start=start, span=span):
                    feedback.progress(start * 0.9 + span * complete)
                    return 0 if feedback.is_canceled() else 1

                band = dataset.GetRasterBand(index)
                result = gdal.FillNodata(band, None, float(max_distance), 0, callback=callback)
                if feedback.is_canceled():
                    raise Canceled()
                if result != 0:
                    raise CoreError(
                        "Interpolation of band %d failed (%s): try mode nodata or "
                        "constant." % (index, "; ".join(errors) or "GDAL error")
                    )
            dataset.FlushCache()
        finally:
            dataset = None
    finally:
        gdal.PopErrorHandler()

    # Count what could not be filled (farther than max_distance from valid data).
    unfilled = np.zeros(len(per_band), dtype=np.int64)
    with rasterio.open(path) as ds:
        dtype = np.dtype(ds.dtypes[0])
        windows = list(chunk_windows(ds.width, ds.height, ds.count * dtype.itemsize))
        for n, window in enumerate(windows, start=1):
            feedback.check_canceled()
            data = ds.read(window=window)
            # Per band: each value judged on its own (see invalid_mask). Every non-finite
            # value was made nodata before filling, so "invalid" here means "still nodata".
            unfilled += (~valid_pixels(data[np.newaxis], nodata)).sum(axis=(1, 2))
            feedback.progress(0.9 + 0.1 * n / len(windows))
    return [int(v) for v in unfilled]
