"""Good-practice accuracy and area estimation (core/accuracy): the estimators against a hand
computation, their 95 % intervals against known truth by simulation, the sample size and
allocations, and the stratified sampler on a small map. No QGIS, no TensorFlow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from wetland_unet_plugin.core.accuracy.estimators import (
    allocate,
    sample_size,
    stratified_estimates,
)
from wetland_unet_plugin.core.accuracy.sampling import sample_points
from wetland_unet_plugin.core.feedback import CoreError

#: Sample counts, rows = map class (stratum), columns = reference class.
COUNTS = [[45, 4, 1], [6, 38, 6], [2, 3, 95]]
#: Mapped pixels of each class.
PIXELS = [1000, 3000, 16000]
#: One pixel in hectares (10 m pixels).
HA = 0.01


def hand(counts, pixels, pixel_area):
    """Olofsson et al. (2014) eqs. 1-11 written out with plain Python arithmetic."""
    k = len(counts)
    total = sum(pixels)
    w = [pixels[i] / total for i in range(k)]
    n_i = [sum(row) for row in counts]
    p = [[w[i] * counts[i][j] / n_i[i] for j in range(k)] for i in range(k)]
    col = [sum(p[i][j] for i in range(k)) for j in range(k)]
    users = [p[i][i] / sum(p[i]) for i in range(k)]
    producers = [p[j][j] / col[j] for j in range(k)]
    oa = sum(p[i][i] for i in range(k))
    v_oa = sum(w[i] ** 2 * users[i] * (1 - users[i]) / (n_i[i] - 1) for i in range(k))
    v_users = [users[i] * (1 - users[i]) / (n_i[i] - 1) for i in range(k)]
    v_prod = []
    for j in range(k):
        n_dot_j = sum(pixels[i] / n_i[i] * counts[i][j] for i in range(k))
        first = pixels[j] ** 2 * (1 - producers[j]) ** 2 * v_users[j]
        second = producers[j] ** 2 * sum(
            pixels[i] ** 2 * counts[i][j] / n_i[i] * (1 - counts[i][j] / n_i[i]) / (n_i[i] - 1)
            for i in range(k)
            if i != j
        )
        v_prod.append((first + second) / n_dot_j**2)
    area = total * pixel_area
    se_area = [
        area
        * math.sqrt(
            sum(
                w[i] ** 2 * (counts[i][j] / n_i[i]) * (1 - counts[i][j] / n_i[i]) / (n_i[i] - 1)
                for i in range(k)
            )
        )
        for j in range(k)
    ]
    return {
        "p": p,
        "oa": oa,
        "oa_ci": 1.96 * math.sqrt(v_oa),
        "users": users,
        "users_ci": [1.96 * math.sqrt(v) for v in v_users],
        "producers": producers,
        "producers_ci": [1.96 * math.sqrt(v) for v in v_prod],
        "area": [area * c for c in col],
        "area_ci": [1.96 * s for s in se_area],
    }


def test_stratified_estimates_match_a_hand_computation():
    est = stratified_estimates(COUNTS, PIXELS, HA)
    ref = hand(COUNTS, PIXELS, HA)
    assert np.allclose(est["proportions"], ref["p"], rtol=0, atol=1e-12)
    assert est["overall_accuracy"] == pytest.approx(ref["oa"], abs=1e-9)
    assert est["overall_accuracy_ci95"] == pytest.approx(ref["oa_ci"], abs=1e-9)
    for key, name in (
        ("users_accuracy", "users"),
        ("users_accuracy_ci95", "users_ci"),
        ("producers_accuracy", "producers"),
        ("producers_accuracy_ci95", "producers_ci"),
        ("estimated_area", "area"),
        ("estimated_area_ci95", "area_ci"),
    ):
        assert est[key] == pytest.approx(ref[name], abs=1e-9), key
    # A few numbers by hand outright: W = (0.05, 0.15, 0.8); p_11 = 0.05 * 45/50 = 0.045.
    assert est["proportions"][0][0] == pytest.approx(0.045, abs=1e-12)
    assert est["users_accuracy"][0] == pytest.approx(0.9, abs=1e-12)
    # Forest area: 200 ha * (0.05 * 1/50 + 0.15 * 6/50 + 0.8 * 95/100) = 155.8 ha.
    assert est["estimated_area"][2] == pytest.approx(155.8, abs=1e-9)
    assert est["mapped_area"] == pytest.approx([10.0, 30.0, 160.0], abs=1e-9)
    assert sum(est["estimated_area"]) == pytest.approx(200.0, abs=1e-9)


def test_a_stratum_with_fewer_than_two_points_is_reported_not_estimated():
    counts = [[1, 0, 0], [6, 38, 6], [2, 3, 95]]
    est = stratified_estimates(counts, PIXELS, HA)
    assert est["excluded"] == [0]
    assert est["users_accuracy"][0] is None and est["estimated_area"][0] is None
    assert est["producers_accuracy"][0] is None
    # The others are estimated over the domain of strata 2 and 3 (190 ha).
    assert est["domain_area"] == pytest.approx(190.0)
    assert est["users_accuracy"][1:] == pytest.approx([38 / 50, 95 / 100], abs=1e-12)
    # Forest: 30 ha mapped wetland * 6/50 + 160 ha mapped forest * 95/100 = 155.6 ha.
    assert est["estimated_area"][2] == pytest.approx(3.6 + 152.0, abs=1e-9)
    assert est["estimated_area_ci95"][0] is None


def test_the_95_percent_intervals_cover_the_true_areas_about_95_percent_of_the_time():
    """A synthetic map (three strata of known pixels and known true labels) sampled 400
    times; each time every class's 95 % interval is checked against its true area."""
    rng = np.random.default_rng(20)
    # Finite populations: true reference labels of every pixel of each stratum.
    truth = np.array([[9000, 700, 300], [1500, 16000, 2500], [400, 1600, 68000]])
    pixels = truth.sum(axis=1)
    true_area = truth.sum(axis=0) * HA
    allocation = allocate(pixels, 300, "minimum_then_proportional", 50)
    covered, trials = np.zeros(3), 400
    oa_covered = 0
    true_oa = np.trace(truth) / truth.sum()
    for _ in range(trials):
        counts = np.stack(
            [rng.multivariate_hypergeometric(truth[i], allocation[i]) for i in range(3)]
        )
        est = stratified_estimates(counts, pixels, HA)
        for j in range(3):
            low = est["estimated_area"][j] - est["estimated_area_ci95"][j]
            high = est["estimated_area"][j] + est["estimated_area_ci95"][j]
            covered[j] += low <= true_area[j] <= high
        oa_covered += abs(est["overall_accuracy"] - true_oa) <= est["overall_accuracy_ci95"]
    rate = covered.sum() / (3 * trials)
    print(f"coverage: {rate:.3f} pooled, per class {covered / trials}, OA {oa_covered / trials}")
    assert 0.90 <= rate <= 0.99, (rate, covered / trials)
    assert np.all(covered / trials >= 0.88), covered / trials
    assert 0.90 <= oa_covered / trials <= 0.99


def test_sample_size_is_equation_13_of_olofsson_2014():
    # Their worked example: W = (0.02, 0.015, 0.32, 0.645), U = (0.7, 0.6, 0.9, 0.95),
    # S(O) = 0.01 gives n = 641.
    weights, users = [0.02, 0.015, 0.32, 0.645], [0.7, 0.6, 0.9, 0.95]
    by_hand = (sum(w * math.sqrt(u * (1 - u)) for w, u in zip(weights, users)) / 0.01) ** 2
    assert sample_size(weights, users, 0.01) == math.ceil(by_hand) == 641
    with pytest.raises(CoreError, match="between 0 and 1"):
        sample_size(weights, 1.0, 0.01)


def test_allocations():
    pixels = [200, 1000, 8800, 0]
    assert list(allocate(pixels, 100, "proportional")) == [2, 10, 88, 0]
    assert list(allocate(pixels, 99, "equal")) == [33, 33, 33, 0]
    # 50 each first, then the 50 left in proportion to area: 1, 5, 44.
    assert list(allocate(pixels, 200, "minimum_then_proportional", 50)) == [51, 55, 94, 0]
    # Never more points than pixels: the surplus goes to the others.
    assert list(allocate([3, 1000, 1000], 60, "equal")) == [3, 29, 28]
    with pytest.raises(CoreError, match="at least 6"):
        allocate([10, 10, 10], 5, "equal")


def write_map(path, array, nodata=0, res=10.0):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype=array.dtype,
        crs="EPSG:32633",
        nodata=nodata,
        transform=from_origin(500000.0, 5800000.0, res, res),
    ) as dst:
        dst.write(array[None])
    return str(path)


def read_points(path):
    from osgeo import ogr

    ds = ogr.Open(path)
    layer = ds.GetLayer(0)
    rows = [
        (
            f.GetField("map_class"),
            f.GetField("map_name"),
            f.IsFieldNull("reference"),
            f.GetField("stratum_pixels"),
            f.GetGeometryRef().GetX(),
            f.GetGeometryRef().GetY(),
        )
        for f in layer
    ]
    return rows


def test_sampler_draws_the_allocation_inside_each_stratum_and_never_on_nodata(tmp_path):
    rng = np.random.default_rng(1)
    array = rng.choice([1, 2, 3], size=(300, 90), p=[0.1, 0.3, 0.6]).astype(np.uint8)
    array[:40, :] = 0  # nodata band across the top
    array[200:, 50:] = 0
    path = write_map(tmp_path / "map.tif", array)
    out = str(tmp_path / "sample.gpkg")
    result = sample_points(
        path,
        out,
        class_names="water,wetland,forest",
        sample_size=120,
        min_per_class=30,
        seed=5,
        output_table=str(tmp_path / "allocation.csv"),
    )
    pixels = [int((array == k).sum()) for k in (1, 2, 3)]
    expected = allocate(pixels, 120, "minimum_then_proportional", 30)
    rows = read_points(out)
    assert result["points"] == len(rows) == 120
    for k in (1, 2, 3):
        assert sum(r[0] == k for r in rows) == expected[k - 1]
    cells = set()
    for map_class, name, empty, stratum, x, y in rows:
        col, row = int((x - 500000.0) // 10), int((5800000.0 - y) // 10)
        assert array[row, col] == map_class  # inside a pixel of its stratum, never nodata
        assert name == "water,wetland,forest".split(",")[map_class - 1]
        assert empty and stratum == pixels[map_class - 1]
        cells.add((row, col))
    assert len(cells) == 120  # distinct pixels
    # The same seed draws the same sample.
    out2 = str(tmp_path / "again.gpkg")
    sample_points(
        path, out2, class_names="water,wetland,forest", sample_size=120, min_per_class=30, seed=5
    )
    assert read_points(out2) == rows


def test_a_class_the_map_never_shows_gets_an_area_from_the_other_strata():
    # Class 3 is mapped nowhere, yet 5 of 50 points mapped as class 2 are class 3.
    counts = [[40, 10, 0], [5, 40, 5], [0, 0, 0]]
    est = stratified_estimates(counts, [2000, 8000, 0], HA)
    assert est["users_accuracy"][2] is None
    assert est["producers_accuracy"][2] == 0.0
    # 80 ha mapped as class 2 * 5/50 = 8 ha of class 3; SE = 100 ha * 0.8 * sqrt(0.1*0.9/49).
    assert est["estimated_area"][2] == pytest.approx(8.0, abs=1e-9)
    assert est["estimated_area_ci95"][2] == pytest.approx(
        1.96 * 100 * 0.8 * math.sqrt(0.1 * 0.9 / 49), abs=1e-9
    )
    assert est["excluded"] == []


def test_sample_size_counts_only_the_classes_the_map_shows(tmp_path):
    # Three names, two mapped classes: 4 points are enough (2 each), 3 are not.
    array = np.zeros((20, 20), dtype=np.uint8)
    array[:, :10], array[:, 10:15] = 1, 3
    path = write_map(tmp_path / "two.tif", array)
    result = sample_points(
        path, str(tmp_path / "s.gpkg"), class_names="a,b,c", sample_size=4, allocation="equal"
    )
    assert [a["points"] for a in result["allocation"]] == [2, 0, 2]
    with pytest.raises(CoreError, match="too small for 2 mapped classes"):
        sample_points(path, str(tmp_path / "t.gpkg"), class_names="a,b,c", sample_size=3)
    assert not (tmp_path / "t.gpkg").exists()
