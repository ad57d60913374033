"""clean_invalid: NaN, +-Inf, nodata and listed values become nodata (or filled), counted exactly.

Invalid values are planted at known positions; the expected output and counts
are built from those positions, not from the code under test.
"""

import json
import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from tests.rasters import write_raster
from tests.recorder import Recorder
from wetland_unet_plugin.core.clean import clean_invalid
from wetland_unet_plugin.core.feedback import Canceled, CoreError


def write(path, data, nodata=None, descriptions=None, tiled=False):
    return write_raster(
        path,
        data,
        "EPSG:32633",
        from_origin(400000, 5800000, 10, 10),
        nodata,
        descriptions,
        tiled=tiled,
    )


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.nodata, ds.profile, ds.descriptions


def bits(array):
    """View an array as unsigned integers of the same width, for bit-for-bit comparison."""
    return array.view(f"u{array.dtype.itemsize}")


# Positions (band, row, col) of planted values, in a 4-band 30 x 40 raster.
PLANTS = {
    "nan": [(0, 1, 2), (2, 10, 10), (3, 29, 39)],
    "+inf": [(0, 5, 5), (1, 5, 5)],
    "-inf": [(1, 0, 0)],
    "-1": [(2, 7, 8), (3, 7, 8), (0, 20, 30)],
    "nodata": [(3, 0, 1), (0, 15, 15)],
}


def planted_float(bands, nodata=-9999.0):
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 3000, size=(4, 30, 40)).astype(np.float32)[:bands]
    values = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf, "-1": -1.0, "nodata": nodata}
    bad = np.zeros(data.shape, bool)
    for key, positions in PLANTS.items():
        for b, r, c in positions:
            if b < bands:
                data[b, r, c] = values[key]
                bad[b, r, c] = True
    return data, bad


@pytest.mark.parametrize("bands", [1, 4])
def test_float32_nan_inf_minus_one_nodata(tmp_path, bands):
    data, bad = planted_float(bands)
    src = write(
        tmp_path / "in.tif", data, nodata=-9999.0, descriptions=["B", "G", "R", "NIR"][:bands]
    )
    out = str(tmp_path / "out.tif")
    fb = Recorder()
    result = clean_invalid(src, out, feedback=fb)
    got, nodata, profile, descriptions = read(out)
    assert nodata == -9999.0  # the input's nodata is kept
    assert profile["dtype"] == "float32" and profile["count"] == bands
    assert descriptions == tuple(["B", "G", "R", "NIR"][:bands])
    assert np.all(got[bad] == -9999.0)
    assert np.array_equal(bits(got[~bad]), bits(data[~bad]))  # valid values bit for bit
    assert result["invalid_count"] == int(bad.sum())
    assert result["per_band"] == [int(v) for v in bad.sum(axis=(1, 2))]
    assert result["invalid_pixels"] == int(bad.any(axis=0).sum())
    assert result["nodata"] == -9999.0 and result["mode"] == "nodata"
    assert any("Band 1" in line for line in fb.lines)
    json.dumps(result)


def test_float_without_nodata_uses_first_listed_value(tmp_path):
    data, bad = planted_float(4, nodata=-1.0)  # "nodata" plants are -1 here too
    src = write(tmp_path / "in.tif", data)
    out = str(tmp_path / "out.tif")
    result = clean_invalid(src, out, invalid_values="-1, 2000.5")
    got, nodata, _, _ = read(out)
    assert nodata == -1.0 and result["nodata"] == -1.0
    assert np.all(got[bad] == -1.0)
    assert np.array_equal(bits(got[~bad]), bits(data[~bad]))
    assert result["invalid_count"] == int(bad.sum())


def test_float_without_nodata_or_listed_values_gets_minus_9999(tmp_path):
    data = np.arange(12, dtype=np.float64).reshape(3, 4)
    data[1, 2] = np.nan
    data[0, 0] = -1.0  # not listed: valid
    src = write(tmp_path / "in.tif", data)
    result = clean_invalid(src, str(tmp_path / "out.tif"), invalid_values="")
    got, nodata, _, _ = read(str(tmp_path / "out.tif"))
    assert nodata == -9999.0 and got[0, 1, 2] == -9999.0 and got[0, 0, 0] == -1.0
    assert result["invalid_count"] == 1


@pytest.mark.parametrize("bands", [1, 4])
def test_int16_minus_one_and_nodata(tmp_path, bands):
    rng = np.random.default_rng(2)
    data = rng.integers(0, 10000, size=(bands, 30, 40)).astype(np.int16)
    bad = np.zeros(data.shape, bool)
    for b, r, c in [(0, 0, 0), (0, 29, 39), (bands - 1, 3, 4), (bands - 1, 3, 5)]:
        data[b, r, c] = -1
        bad[b, r, c] = True
    for b, r, c in [(0, 10, 11), (bands - 1, 12, 13)]:
        data[b, r, c] = -32768
        bad[b, r, c] = True
    data[0, 20, 20] = 65535 - 65536 + 2  # -32767: valid, not listed
    src = write(tmp_path / "in.tif", data, nodata=-32768)
    out = str(tmp_path / "out.tif")
    result = clean_invalid(src, out, invalid_values="-1, 65535")  # 65535 cannot be int16
    got, nodata, profile, _ = read(out)
    assert profile["dtype"] == "int16" and nodata == -32768
    assert np.all(got[bad] == -32768)
    assert np.array_equal(got[~bad], data[~bad])
    assert result["per_band"] == [int(v) for v in bad.sum(axis=(1, 2))]
    assert result["invalid_count"] == int(bad.sum())
    assert result["invalid_pixels"] == int(bad.any(axis=0).sum())
    assert isinstance(result["nodata"], int)


@pytest.mark.parametrize("bands", [1, 4])
def test_uint8_mask_and_image(tmp_path, bands):
    rng = np.random.default_rng(3)
    data = rng.integers(1, 6, size=(bands, 30, 40)).astype(np.uint8)
    bad = np.zeros(data.shape, bool)
    data[0, 2, 3] = 0  # nodata
    bad[0, 2, 3] = True
    data[bands - 1, 4, 4] = 255  # listed
    bad[bands - 1, 4, 4] = True
    src = write(tmp_path / "in.tif", data, nodata=0)
    fb = Recorder()
    result = clean_invalid(src, str(tmp_path / "out.tif"), invalid_values="-1, 255", feedback=fb)
    got, nodata, profile, _ = read(str(tmp_path / "out.tif"))
    assert profile["dtype"] == "uint8" and nodata == 0
    assert np.all(got[bad] == 0) and np.array_equal(got[~bad], data[~bad])
    assert result["invalid_count"] == int(bad.sum())
    assert any("-1" in line and "skipped" in line for line in fb.lines)


def test_uint8_without_nodata_has_nothing_invalid(tmp_path):
    data = np.arange(256, dtype=np.uint8).reshape(16, 16)
    src = write(tmp_path / "in.tif", data)
    result = clean_invalid(src, str(tmp_path / "out.tif"))
    got, nodata, _, _ = read(str(tmp_path / "out.tif"))
    assert nodata is None and result["nodata"] is None
    assert result["invalid_count"] == 0 and np.array_equal(got[0], data)


def test_explicit_nodata_and_collision_warning(tmp_path):
    data = np.array([[1, 2, -1], [0, 5, 6]], np.int32)
    src = write(tmp_path / "in.tif", data)
    fb = Recorder()
    result = clean_invalid(src, str(tmp_path / "out.tif"), nodata=0, feedback=fb)
    got, nodata, _, _ = read(str(tmp_path / "out.tif"))
    assert nodata == 0 and got[0, 0, 2] == 0 and got[0, 1, 0] == 0
    assert result["nodata_collisions"] == 1
    assert any("equal the output nodata" in line for line in fb.lines)


def test_constant_mode(tmp_path):
    data, bad = planted_float(4)
    src = write(tmp_path / "in.tif", data, nodata=-9999.0)
    out = str(tmp_path / "out.tif")
    result = clean_invalid(src, out, mode="constant", fill_value=0)
    got, nodata, _, _ = read(out)
    assert nodata is None and result["nodata"] is None
    assert np.all(got[bad] == 0)
    assert np.array_equal(bits(got[~bad]), bits(data[~bad]))
    assert result["invalid_count"] == int(bad.sum()) and result["fill_value"] == 0.0
    with pytest.raises(CoreError, match="FILL_VALUE"):
        clean_invalid(
            write(tmp_path / "u8.tif", np.ones((4, 4), np.uint8)),
            str(tmp_path / "o2.tif"),
            mode="constant",
            fill_value=-5,
        )
    assert not os.path.exists(tmp_path / "o2.tif")


def test_interpolate_mode(tmp_path):
    rows, cols = np.mgrid[0:40, 0:50]
    data = (100.0 + 3.0 * rows + 2.0 * cols).astype(np.float32)
    bad = np.zeros(data.shape, bool)
    holes = [(5, 5), (10, 30), (20, 20), (33, 44)]
    for r, c in holes:
        data[r, c] = np.nan
        bad[r, c] = True
    data[25, 10] = -1.0
    bad[25, 10] = True
    src = write(tmp_path / "in.tif", data)
    out = str(tmp_path / "out.tif")
    result = clean_invalid(src, out, mode="interpolate")
    got = read(out)[0][0]
    assert np.array_equal(bits(got[~bad]), bits(data[~bad]))
    for r, c in holes + [(25, 10)]:
        around = data[r - 1 : r + 2, c - 1 : c + 2]
        around = around[np.isfinite(around) & (around != -1)]
        assert around.min() <= got[r, c] <= around.max(), (r, c, got[r, c])
    assert result["invalid_count"] == 5 and result["unfilled"] == [0]


def test_interpolate_leaves_far_values_nodata(tmp_path):
    data = np.ones((60, 60), np.float32)
    data[10:50, 10:50] = np.nan
    src = write(tmp_path / "in.tif", data)
    result = clean_invalid(src, str(tmp_path / "out.tif"), mode="interpolate", max_distance=5)
    got, nodata, _, _ = read(str(tmp_path / "out.tif"))
    assert result["invalid_count"] == 1600
    assert 0 < result["unfilled"][0] < 1600
    assert result["unfilled"][0] == int((got[0] == nodata).sum())
    assert got[0, 25, 25] == nodata and got[0, 10, 10] == 1.0


def test_block_streaming_large_raster(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.integers(0, 5000, size=(3, 700, 600)).astype(np.int16)
    bad = rng.random(data.shape) < 0.01
    data[bad] = -1
    src = write(tmp_path / "in.tif", data, tiled=True)
    out = str(tmp_path / "out.tif")
    fb = Recorder()
    result = clean_invalid(src, out, feedback=fb)
    got, nodata, profile, _ = read(out)
    assert nodata == -1
    assert np.array_equal(got, data)  # -1 stays -1, now as nodata
    assert result["per_band"] == [int(v) for v in bad.sum(axis=(1, 2))]
    assert result["invalid_pixels"] == int(bad.any(axis=0).sum())
    assert profile["blockxsize"] == 256 and profile["tiled"]
    assert len(fb.fractions) >= 3 and fb.fractions == sorted(fb.fractions)
    assert fb.fractions[-1] == pytest.approx(1.0)


def test_block_windows_stay_bounded():
    from wetland_unet_plugin.core.raster import chunk_windows

    windows = list(chunk_windows(20000, 20000, 4 * 4, max_bytes=64 * 1024 * 1024))
    assert max(w.width * w.height for w in windows) * 16 <= 64 * 1024 * 1024
    assert sum(w.width * w.height for w in windows) == 20000 * 20000


def test_cancel_and_bad_inputs(tmp_path):
    data = np.ones((3, 700, 600), np.int16)
    src = write(tmp_path / "in.tif", data)
    out = str(tmp_path / "out.tif")
    with pytest.raises(Canceled):
        clean_invalid(src, out, feedback=Recorder(cancel_after=1))
    assert not os.path.exists(out)
    assert not [n for n in os.listdir(tmp_path) if ".partial-" in n]
    with pytest.raises(CoreError, match="also an input"):
        clean_invalid(src, src)
    with pytest.raises(CoreError, match="MODE"):
        clean_invalid(src, out, mode="magic")
    with pytest.raises(CoreError, match="INVALID_VALUES"):
        clean_invalid(src, out, invalid_values="-1, abc")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CoreError, match="not a raster"):
        clean_invalid(str(text), out)
    assert not os.path.exists(out)
