"""predict's OUTPUT_AREAS (hectares per class) and OUTPUT_UNCERTAINTY (normalised entropy).

The model is the 1x1 softmax of test_predict (p1 = sigmoid(16 (x - 0.5))), so the
expected probabilities, classes and entropies are computed here from the pixel values.
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from tests.core.test_predict import pointwise_model, save
from wetland_unet_plugin.core.feedback import CoreError
from wetland_unet_plugin.core.inference.scene import predict_scene, run_scene


def write(path, array, crs, transform, nodata=None):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[2],
        height=array.shape[1],
        count=array.shape[0],
        dtype=array.dtype,
        crs=crs,
        nodata=nodata,
        transform=transform,
    ) as dst:
        dst.write(array)
    return str(path)


def read_table(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save(pointwise_model(), tmp_path_factory.mktemp("m") / "point.keras", 2, depth=1)


def scene_values(rows, cols):
    """A ramp with values never exactly 0.5, NaN in a corner block."""
    x = (np.arange(rows * cols, dtype=np.float32).reshape(rows, cols) + 0.25) / (rows * cols)
    x[:5, :7] = np.nan
    return x


def test_uncertainty_is_normalised_entropy_and_areas_are_pixels_times_pixel_area(
    tmp_path, model_file
):
    x = scene_values(37, 45)
    # 10 m x 20 m pixels: the area of a pixel is 200 m2 = 0.02 ha.
    src = write(tmp_path / "in.tif", x[None], "EPSG:32633", Affine(10, 0, 500000, 0, -20, 5.8e6))
    result = predict_scene(
        model_file,
        src,
        str(tmp_path / "c.tif"),
        output_uncertainty=str(tmp_path / "u.tif"),
        output_areas=str(tmp_path / "areas.csv"),
        tile_size=32,
    )
    valid = np.isfinite(x)
    p1 = 1.0 / (1.0 + np.exp(-16.0 * (x.astype(np.float64) - 0.5)))
    entropy = -(p1 * np.log(p1) + (1 - p1) * np.log(1 - p1)) / math.log(2)
    with rasterio.open(tmp_path / "u.tif") as ds:
        assert ds.dtypes[0] == "float32" and ds.nodata == -1.0
        u = ds.read(1)
    assert np.all(u[~valid] == -1.0)
    np.testing.assert_allclose(u[valid], entropy[valid], atol=2e-4)
    assert 0.0 <= u[valid].min() and u[valid].max() <= 1.0

    # class 1 (c1) is p1 > 0.5, i.e. x > 0.5
    expected_pixels = [int(np.sum(valid & (x > 0.5))), int(np.sum(valid & (x < 0.5)))]
    with rasterio.open(tmp_path / "c.tif") as ds:
        classes = ds.read(1)
    assert np.bincount(classes.ravel(), minlength=3)[1:].tolist() == expected_pixels
    rows = read_table(tmp_path / "areas.csv")
    assert [r["class_name"] for r in rows] == ["c1", "c2", "total"]
    assert [int(r["pixels"]) for r in rows] == expected_pixels + [sum(expected_pixels)]
    for row, pixels in zip(rows, expected_pixels + [sum(expected_pixels)]):
        assert float(row["hectares"]) == pytest.approx(pixels * 10 * 20 / 10_000, rel=1e-9)
    assert result["class_hectares"]["c2"] == pytest.approx(expected_pixels[1] * 0.02)


def authalic_band_area(lat1, lat2, dlon, a=6378137.0, f=1 / 298.257223563):
    """Area (m2) of the WGS84 ellipsoid between two latitudes over dlon degrees (closed form)."""
    e2 = f * (2 - f)
    e = math.sqrt(e2)
    b2 = (a * (1 - f)) ** 2

    def q(lat):
        s = math.sin(math.radians(lat))
        return s / (1 - e2 * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)

    return abs(b2 * math.radians(dlon) / 2 * (q(lat2) - q(lat1)))


def test_areas_in_a_geographic_crs_use_each_rows_ellipsoidal_pixel_area(tmp_path, model_file):
    x = scene_values(40, 30)
    step = 0.001  # degrees; rows from 60.04 N down to 60.00 N
    src = write(tmp_path / "in.tif", x[None], "EPSG:4326", Affine(step, 0, 10.0, 0, -step, 60.04))
    predict_scene(
        model_file, src, str(tmp_path / "c.tif"), output_areas=str(tmp_path / "a.csv"), tile_size=32
    )
    with rasterio.open(tmp_path / "c.tif") as ds:
        classes = ds.read(1)
    row_area = np.array(
        [authalic_band_area(60.04 - r * step, 60.04 - (r + 1) * step, step) for r in range(40)]
    )
    rows = read_table(tmp_path / "a.csv")
    for k in (1, 2):
        expected_ha = float(np.sum((classes == k).sum(axis=1) * row_area)) / 10_000
        assert float(rows[k - 1]["hectares"]) == pytest.approx(expected_ha, rel=1e-6)
    # a pixel of 0.001 x 0.001 degrees at 60 N is about 55.8 m x 111.4 m
    assert row_area[0] == pytest.approx(55.8 * 111.4, rel=0.01)


def test_new_outputs_leave_the_default_outputs_byte_identical(tmp_path, model_file):
    x = scene_values(37, 45)
    src = write(tmp_path / "in.tif", x[None], "EPSG:32633", Affine(10, 0, 5e5, 0, -10, 5.8e6))
    plain, extra = tmp_path / "plain", tmp_path / "extra"
    plain.mkdir(), extra.mkdir()
    predict_scene(
        model_file,
        src,
        str(plain / "c.tif"),
        output_probabilities=str(plain / "p.tif"),
        tile_size=32,
    )
    predict_scene(
        model_file,
        src,
        str(extra / "c.tif"),
        output_probabilities=str(extra / "p.tif"),
        output_uncertainty=str(extra / "u.tif"),
        output_areas=str(extra / "a.csv"),
        tile_size=32,
    )
    for name in ("c.tif", "p.tif"):
        assert (plain / name).read_bytes() == (extra / name).read_bytes()


def test_area_and_uncertainty_paths_are_checked_before_any_output(tmp_path, model_file):
    x = scene_values(20, 20)
    src = write(tmp_path / "in.tif", x[None], "EPSG:32633", Affine(10, 0, 5e5, 0, -10, 5.8e6))
    out = tmp_path / "c.tif"
    with pytest.raises(CoreError, match="OUTPUT_AREAS.*does not exist"):
        predict_scene(model_file, src, str(out), output_areas=str(tmp_path / "no" / "a.csv"))
    with pytest.raises(CoreError, match="same file"):
        predict_scene(model_file, src, str(out), output_uncertainty=str(out))
    with pytest.raises(CoreError, match="also an input"):
        predict_scene(model_file, src, str(out), output_areas=src)
    nocrs = write(tmp_path / "nocrs.tif", x[None], None, Affine(10, 0, 0, 0, -10, 0))
    with pytest.raises(CoreError, match="no coordinate reference system"):
        predict_scene(model_file, nocrs, str(out), output_areas=str(tmp_path / "a.csv"))
    assert sorted(os.listdir(tmp_path)) == ["in.tif", "nocrs.tif"]


@pytest.mark.parametrize("tta,portable", [(2, False), (4, False), (4, True)])
def test_uncertainty_has_the_tta_disagreement_as_a_second_band(tmp_path, tta, portable):
    """shift_model's class under each transform is the sign of one neighbour (right, left,
    below, above): the share of transforms whose class differs from the final one. Also
    with the Keras-ops predictor that JAX and PyTorch use."""
    from tests.core.test_predict import shift_expectations, shift_model

    path = save(shift_model(), tmp_path / "shift.keras", 2, depth=1)
    x = (np.random.default_rng(8).random((40, 50)) - 0.5).astype(np.float32)
    src = write(tmp_path / "in.tif", x[None], "EPSG:32633", Affine(10, 0, 5e5, 0, -10, 5.8e6))
    run_scene(
        path,
        src,
        str(tmp_path / "c.tif"),
        output_uncertainty=str(tmp_path / "u.tif"),
        tile_size=32,
        tta=tta,
        portable=portable,
    )
    seen = np.stack(shift_expectations(x)[:tta])  # class-1 probability per transform
    final_is_1 = seen.mean(axis=0) > 0.5
    disagree = ((seen > 0.5) != final_is_1).mean(axis=0)
    p1 = seen.mean(axis=0)
    entropy = -(p1 * np.log(p1) + (1 - p1) * np.log(1 - p1)) / math.log(2)
    with rasterio.open(tmp_path / "u.tif") as ds:
        assert ds.count == 2 and ds.descriptions == ("uncertainty", "tta_disagreement")
        u = ds.read()
    np.testing.assert_allclose(u[0, 1:-1, 1:-1], entropy, atol=1e-4)
    np.testing.assert_allclose(u[1, 1:-1, 1:-1], disagree, atol=1e-5)
    assert set(np.unique(disagree)) > {0.0}  # the transforms do disagree somewhere
