"""align_pair: no label under an invalid image pixel (issue 18).

A hand-built 30 x 20 image (UTM 18N, 10 m) with a nodata block (blackfill), a cloud
block set to nodata as preparescene does, and one pixel with a single band at nodata;
a label mask over all of it (raster or polygons): class 1 west of x = X0 + 150 m,
class 2 east of it. The expected labels and the labels dropped are counted from those
blocks, not from the code under test.
"""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from tests.rasters import write_polygons, write_raster
from tests.recorder import Recorder
from wetland_unet_plugin.core.alignment import align_pair

X0, Y0, PX, W, H = 600000.0, 4400000.0, 10.0, 30, 20
BOUNDARY_COL = 15  # class 1 in columns 0..14, class 2 in 15..29
BLACKFILL = (slice(2, 6), slice(3, 9))  # 4 x 6 = 24 px, class 1
CLOUD = (slice(10, 15), slice(15, 25))  # 5 x 10 = 50 px, class 2
ONE_BAND = (17, 2)  # band 2 at nodata only: invalid (any band), class 1


def image_data(dtype=np.uint16):
    """Three bands of values 1..; the blackfill, the cloud and one band of ONE_BAND are 0."""
    rng = np.random.default_rng(3)
    data = rng.integers(1, 3000, size=(3, H, W)).astype(dtype)
    data[:, BLACKFILL[0], BLACKFILL[1]] = 0
    data[:, CLOUD[0], CLOUD[1]] = 0
    data[1, ONE_BAND[0], ONE_BAND[1]] = 0
    return data


def expected_labels():
    """Class by column, 0 on the invalid pixels; and {class: labels dropped}."""
    labels = np.where(np.arange(W) < BOUNDARY_COL, 1, 2)[None, :].repeat(H, axis=0)
    invalid = np.zeros((H, W), bool)
    invalid[BLACKFILL] = invalid[CLOUD] = True
    invalid[ONE_BAND] = True
    return np.where(invalid, 0, labels), {"1": 24 + 1, "2": 50}


@pytest.fixture
def image(tmp_path):
    return write_raster(
        tmp_path / "image.tif", image_data(), transform=from_origin(X0, Y0, PX, PX), nodata=0
    )


def mask_raster(path):
    """A 5 m label raster reaching 20 m beyond the image on every side."""
    x0, y0, px = X0 - 20.0, Y0 + 20.0, 5.0
    cols = np.arange(int((W * PX + 40) / px))
    centres = x0 + (cols + 0.5) * px
    row = np.where(centres < X0 + BOUNDARY_COL * PX, 1, 2).astype(np.uint8)
    data = row[None, :].repeat(int((H * PX + 40) / px), axis=0)
    return write_raster(path, data, transform=from_origin(x0, y0, px, px))


def mask_polygons(path):
    """The same two classes as polygons, also reaching beyond the image."""
    xb, west, east = X0 + BOUNDARY_COL * PX, X0 - 20.0, X0 + W * PX + 20.0
    south, north = Y0 - H * PX - 20.0, Y0 + 20.0

    def rect(a, b):
        return f"POLYGON (({a} {south}, {b} {south}, {b} {north}, {a} {north}, {a} {south}))"

    return write_polygons(path, [(rect(west, xb), 1), (rect(xb, east), 2)], "cls", 32618)


@pytest.mark.parametrize("kind", ["raster", "polygons"])
def test_no_label_under_nodata_and_clouds(image, tmp_path, kind):
    if kind == "raster":
        labels = {"mask": mask_raster(tmp_path / "mask.tif")}
    else:
        labels = {"mask_vector": mask_polygons(tmp_path / "mask.gpkg"), "class_field": "cls"}
    out_img, out_mask = str(tmp_path / "img.tif"), str(tmp_path / "out_mask.tif")
    fb = Recorder()
    result = align_pair(image, out_img, out_mask, feedback=fb, **labels)
    expected, dropped = expected_labels()
    with rasterio.open(out_mask) as ds:
        assert ds.transform == from_origin(X0, Y0, PX, PX) and (ds.width, ds.height) == (W, H)
        assert ds.nodata == 0
        np.testing.assert_array_equal(ds.read(1), expected)
    with rasterio.open(out_img) as ds:  # the image itself is untouched
        np.testing.assert_array_equal(ds.read(), image_data())
    assert result["labels_dropped"] == sum(dropped.values()) == 75
    assert result["labelled_pixels"] == {
        "1": BOUNDARY_COL * H - dropped["1"],
        "2": (W - BOUNDARY_COL) * H - dropped["2"],
    }
    assert any(
        "Labels dropped under invalid image pixels" in line and "75" in line for line in fb.lines
    )


def write_masked_float_image(path):
    """Float image without nodata: a NaN in one band at (0, 0), and a GDAL per-dataset
    (internal) mask over rows 12..15, columns 4..9 (24 px, class 1)."""
    data = image_data(np.float32) + 1.0  # no 0 left: every value is data
    data[0, 0, 0] = np.nan
    gdal_mask = np.full((H, W), 255, np.uint8)
    gdal_mask[12:16, 4:10] = 0
    profile = dict(
        driver="GTiff", width=W, height=H, count=3, dtype="float32", crs="EPSG:32618",
        transform=from_origin(X0, Y0, PX, PX),
    )  # fmt: skip
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.write_mask(gdal_mask)
    invalid = gdal_mask == 0
    invalid[0, 0] = True
    return str(path), invalid


@pytest.mark.parametrize("pixel_size", [0.0, 5.0])
def test_no_label_under_nan_or_a_gdal_mask_kept_or_warped(tmp_path, pixel_size):
    """On the image's grid (pixels copied) and on a 5 m grid (warped, nearest): each 5 m
    pixel lies in one image pixel, so the expected mask is the 10 m one, doubled."""
    image, invalid = write_masked_float_image(tmp_path / "image.tif")
    out_img, out_mask = str(tmp_path / "img.tif"), str(tmp_path / "out_mask.tif")
    result = align_pair(
        image,
        out_img,
        out_mask,
        mask=mask_raster(tmp_path / "mask.tif"),
        pixel_size=pixel_size,
        resampling="nearest",
    )
    labels = np.where(np.arange(W) < BOUNDARY_COL, 1, 2)[None, :].repeat(H, axis=0)
    expected = np.where(invalid, 0, labels)
    if pixel_size:
        expected = expected.repeat(2, axis=0).repeat(2, axis=1)
        invalid = invalid.repeat(2, axis=0).repeat(2, axis=1)
    assert result["image_resampled"] is bool(pixel_size)
    with rasterio.open(out_mask) as ds:
        np.testing.assert_array_equal(ds.read(1), expected)
    assert result["labels_dropped"] == int(invalid.sum()) == (25 if not pixel_size else 100)
    with rasterio.open(out_img) as ds:  # the aligned image carries the GDAL mask along
        gdal_mask = ds.dataset_mask() == 0
        assert ds.nodata is None
        np.testing.assert_array_equal(gdal_mask | np.isnan(ds.read(1)), invalid)
