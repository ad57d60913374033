"""alignpair and cleaninvalid through processing.run, as a model or a script runs them."""

import os

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from qgis.core import QgsProcessingException
from rasterio.transform import from_origin

from tests.rasters import write_polygons, write_raster

pytestmark = pytest.mark.usefixtures("provider")

ORIGIN_X, ORIGIN_Y, PIXEL = 499000.0, 4001000.0, 10.0  # UTM 18N, near 36.15N 75.0W


def _image(tmp_path, width=137, height=91, name="image.tif"):
    rng = np.random.default_rng(3)
    data = rng.integers(100, 4000, size=(4, height, width)).astype("uint16")
    return write_raster(
        tmp_path / name,
        data,
        crs="EPSG:32618",
        transform=from_origin(ORIGIN_X, ORIGIN_Y, PIXEL, PIXEL),
        nodata=0,
        descriptions=["blue", "green", "red", "nir"],
    ), data


def _lonlat_of_pixel_centres(transform, width, height):
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    xs, ys = rasterio.transform.xy(
        transform, rows.ravel() - 0.5, cols.ravel() - 0.5, offset="center"
    )
    lon, lat = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True).transform(xs, ys)
    return np.reshape(lon, (height, width)), np.reshape(lat, (height, width))


def _utm_to_lonlat(x, y):
    return Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True).transform(x, y)


def test_alignpair_polygons_in_another_crs(tmp_path):
    """Polygons in EPSG:4326 land on the image grid where their coordinates say."""
    import processing

    image, data = _image(tmp_path)
    # A west polygon (class 1) and an east polygon (class 2) split at a known longitude.
    lon0, lat0 = _utm_to_lonlat(ORIGIN_X - 200, ORIGIN_Y + 200)
    lon1, lat1 = _utm_to_lonlat(ORIGIN_X + 137 * PIXEL + 200, ORIGIN_Y - 91 * PIXEL - 200)
    split = (lon0 + lon1) / 2
    west = f"POLYGON(({lon0} {lat1},{split} {lat1},{split} {lat0},{lon0} {lat0},{lon0} {lat1}))"
    east = f"POLYGON(({split} {lat1},{lon1} {lat1},{lon1} {lat0},{split} {lat0},{split} {lat1}))"
    gpkg = write_polygons(
        tmp_path / "labels.gpkg",
        [(west, "water"), (east, "wetland")],
        "fclass",
        4326,
        field_type="str",
    )
    out_img, out_mask = str(tmp_path / "img_out.tif"), str(tmp_path / "mask_out.tif")
    result = processing.run(
        "wetlandunet:alignpair",
        {
            "IMAGE": image,
            "MASK_VECTOR": gpkg,
            "CLASS_FIELD": "fclass",
            "CLASS_NAMES": "wetland,water",
            "OUTPUT_IMAGE": out_img,
            "OUTPUT_MASK": out_mask,
        },
    )
    assert result["OUTPUT_IMAGE"] == out_img
    with rasterio.open(out_img) as img, rasterio.open(out_mask) as msk:
        assert img.crs == msk.crs and img.transform == msk.transform
        assert (img.width, img.height) == (msk.width, msk.height) == (137, 91)
        # The image's own grid is kept: its pixels come out bit-identical.
        np.testing.assert_array_equal(img.read(), data)
        assert img.descriptions == ("blue", "green", "red", "nir")
        mask = msk.read(1)
        transform = msk.transform
    lon, lat = _lonlat_of_pixel_centres(transform, 137, 91)
    # CLASS_NAMES order: wetland -> 1, water -> 2; west polygon is water.
    expected = np.where(lon < split, 2, 1)
    near_edge = np.abs(lon - split) < 2 * PIXEL / 90000.0
    assert (mask[~near_edge] == expected[~near_edge]).all()


def test_alignpair_raster_mask_larger_and_coarser(tmp_path):
    """A 4326 mask at another resolution and a larger extent is cropped to the image."""
    import processing

    image, _ = _image(tmp_path)
    lon0, lat0 = _utm_to_lonlat(ORIGIN_X - 500, ORIGIN_Y + 500)
    mask = np.ones((60, 80), dtype="uint8")
    mask[:, 40:] = 3
    res = 0.0003
    mask_path = write_raster(
        tmp_path / "mask4326.tif",
        mask,
        crs="EPSG:4326",
        transform=from_origin(lon0, lat0, res, res),
        nodata=0,
    )
    result = processing.run(
        "wetlandunet:alignpair",
        {
            "IMAGE": image,
            "MASK": mask_path,
            "OUTPUT_IMAGE": str(tmp_path / "a.tif"),
            "OUTPUT_MASK": str(tmp_path / "b.tif"),
        },
    )
    with rasterio.open(result["OUTPUT_IMAGE"]) as img, rasterio.open(result["OUTPUT_MASK"]) as msk:
        assert img.crs.to_epsg() == 32618 and msk.crs.to_epsg() == 32618
        assert img.transform == msk.transform and img.shape == msk.shape
        assert abs(img.transform.a - PIXEL) < 1e-9
        out = msk.read(1)
        lon, _ = _lonlat_of_pixel_centres(msk.transform, msk.width, msk.height)
    expected = np.where(lon < lon0 + 40 * res, 1, 3)
    near = np.abs(lon - (lon0 + 40 * res)) < res
    assert set(np.unique(out)) <= {0, 1, 3}
    assert (out[~near] == expected[~near]).mean() > 0.999


def test_alignpair_rejects_pairs_that_do_not_overlap(tmp_path):
    """A mask far away gives a clear error and no output files."""
    import processing

    image, _ = _image(tmp_path)
    far = write_raster(
        tmp_path / "far.tif",
        np.ones((20, 20), "uint8"),
        crs="EPSG:32618",
        transform=from_origin(ORIGIN_X + 1e6, ORIGIN_Y, 10, 10),
        nodata=0,
    )
    outs = [str(tmp_path / "o1.tif"), str(tmp_path / "o2.tif")]
    with pytest.raises(QgsProcessingException, match="(?i)overlap"):
        processing.run(
            "wetlandunet:alignpair",
            {"IMAGE": image, "MASK": far, "OUTPUT_IMAGE": outs[0], "OUTPUT_MASK": outs[1]},
        )
    assert not any(os.path.exists(p) for p in outs)
    assert not [f for f in os.listdir(tmp_path) if ".partial-" in f]


def test_alignpair_rejects_missing_class_field(tmp_path):
    """A polygon layer without the class field names the fields it has."""
    import processing

    image, _ = _image(tmp_path)
    lon0, lat0 = _utm_to_lonlat(ORIGIN_X, ORIGIN_Y)
    lon1, lat1 = _utm_to_lonlat(ORIGIN_X + 500, ORIGIN_Y - 500)
    square = f"POLYGON(({lon0} {lat1},{lon1} {lat1},{lon1} {lat0},{lon0} {lat0},{lon0} {lat1}))"
    gpkg = write_polygons(tmp_path / "p.gpkg", [(square, 1)], "class_id", 4326)
    outs = [str(tmp_path / "o1.tif"), str(tmp_path / "o2.tif")]
    with pytest.raises(QgsProcessingException, match="class_id"):
        processing.run(
            "wetlandunet:alignpair",
            {
                "IMAGE": image,
                "MASK_VECTOR": gpkg,
                "CLASS_FIELD": "landcover",
                "OUTPUT_IMAGE": outs[0],
                "OUTPUT_MASK": outs[1],
            },
        )
    assert not any(os.path.exists(p) for p in outs)


def test_alignpair_rejects_mask_without_crs(tmp_path):
    """A mask with no CRS is refused with advice to assign one."""
    import processing

    image, _ = _image(tmp_path)
    nocrs = write_raster(
        tmp_path / "nocrs.tif",
        np.ones((91, 137), "uint8"),
        crs=None,
        transform=from_origin(ORIGIN_X, ORIGIN_Y, PIXEL, PIXEL),
    )
    outs = [str(tmp_path / "o1.tif"), str(tmp_path / "o2.tif")]
    with pytest.raises(QgsProcessingException, match="(?i)CRS"):
        processing.run(
            "wetlandunet:alignpair",
            {"IMAGE": image, "MASK": nocrs, "OUTPUT_IMAGE": outs[0], "OUTPUT_MASK": outs[1]},
        )
    assert not any(os.path.exists(p) for p in outs)


def test_alignpair_rejects_a_file_that_is_not_a_raster(tmp_path):
    """A text file given as the image fails before any work."""
    import processing

    bogus = tmp_path / "notes.tif"
    bogus.write_text("not a raster")
    mask = write_raster(tmp_path / "m.tif", np.ones((10, 10), "uint8"))
    outs = [str(tmp_path / "o1.tif"), str(tmp_path / "o2.tif")]
    with pytest.raises(QgsProcessingException):
        processing.run(
            "wetlandunet:alignpair",
            {"IMAGE": str(bogus), "MASK": mask, "OUTPUT_IMAGE": outs[0], "OUTPUT_MASK": outs[1]},
        )
    assert not any(os.path.exists(p) for p in outs)


def test_cleaninvalid_counts_and_keeps_valid_values(tmp_path):
    """NaN, +Inf, -Inf, -1 and nodata at known places become nodata; the rest is untouched."""
    import processing

    rng = np.random.default_rng(0)
    data = rng.normal(500, 100, size=(3, 40, 50)).astype("float32")
    bad = {
        (0, 1, 2): np.nan,
        (1, 5, 5): np.inf,
        (2, 7, 9): -np.inf,
        (0, 10, 10): -1.0,
        (1, 20, 30): -9999.0,
        (2, 39, 49): -1.0,
    }
    for index, value in bad.items():
        data[index] = value
    src = write_raster(tmp_path / "in.tif", data, nodata=-9999.0)
    before = open(src, "rb").read()
    out = str(tmp_path / "clean.tif")
    result = processing.run("wetlandunet:cleaninvalid", {"INPUT": src, "OUTPUT": out})
    assert result["INVALID_COUNT"] == len(bad)
    with rasterio.open(out) as ds:
        cleaned = ds.read()
        nodata = ds.nodata
    assert nodata is not None
    invalid = np.zeros(data.shape, bool)
    for index in bad:
        invalid[index] = True
    assert (cleaned[invalid] == nodata).all()
    np.testing.assert_array_equal(cleaned[~invalid].view("uint32"), data[~invalid].view("uint32"))
    assert open(src, "rb").read() == before  # input never modified


def test_cleaninvalid_constant_mode(tmp_path):
    """MODE constant writes FILL_VALUE where values were invalid."""
    import processing

    data = np.full((1, 8, 8), 7, dtype="int16")
    data[0, 2, 3] = -1
    data[0, 4, 4] = -1
    src = write_raster(tmp_path / "i.tif", data)
    out = str(tmp_path / "o.tif")
    result = processing.run(
        "wetlandunet:cleaninvalid",
        {"INPUT": src, "MODE": "constant", "FILL_VALUE": 42, "OUTPUT": out},
    )
    assert result["INVALID_COUNT"] == 2
    with rasterio.open(out) as ds:
        cleaned = ds.read(1)
    expected = data[0].copy()
    expected[2, 3] = expected[4, 4] = 42
    np.testing.assert_array_equal(cleaned, expected)
