"""samplepoints and evaluate with labelled points through processing.run, as a user's
script runs them: the allocation, the points, the area table against a hand computation,
and every bad input of issue 20 (clear message, nothing written)."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from tests.core.test_accuracy import hand

pytestmark = pytest.mark.usefixtures("provider")

NAMES = "water,wetland,forest"
X0, Y0, RES = 500000.0, 5800000.0, 10.0


def write_map(path, array):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        nodata=0,
        transform=from_origin(X0, Y0, RES, RES),
    ) as dst:
        dst.write(array.astype(np.uint8)[None])
    return str(path)


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    """A 3-class map with a nodata border and its 'truth' (the map with 15 % errors)."""
    folder = tmp_path_factory.mktemp("accuracy")
    rng = np.random.default_rng(7)
    rows, cols = np.mgrid[0:120, 0:100]
    array = np.where(cols < 15, 1, np.where(rows < 50, 2, 3)).astype(np.uint8)
    array[:, 95:] = 0
    truth = array.copy()
    flip = (rng.random(array.shape) < 0.15) & (array > 0)
    truth[flip] = rng.integers(1, 4, size=int(flip.sum()))
    return {
        "folder": folder,
        "array": array,
        "truth": truth,
        "map": write_map(folder / "map.tif", array),
        "other": write_map(folder / "other.tif", np.where(array > 0, 4 - array, 0)),
    }


def run(alg, **params):
    import processing

    return processing.run(f"wetlandunet:{alg}", params)


def points(path):
    """fid -> (map_class, x, y) of a sample layer."""
    from osgeo import ogr

    ds = ogr.Open(str(path))
    out = {
        f.GetFID(): (f.GetField("map_class"), f.GetGeometryRef().GetX(), f.GetGeometryRef().GetY())
        for f in ds.GetLayer(0)
    }
    return out


def label(path, values):
    """Write the analyst's labels: fid -> value (None leaves it empty)."""
    from osgeo import ogr

    ds = ogr.Open(str(path), 1)
    layer = ds.GetLayer(0)
    ds.StartTransaction()  # one commit, not one per point
    for fid, value in values.items():
        feature = layer.GetFeature(fid)
        if value is None:
            feature.SetFieldNull("reference")
        else:
            feature.SetField("reference", value)
        layer.SetFeature(feature)
    ds.CommitTransaction()
    ds = None


def cell(x, y):
    return int((Y0 - y) // RES), int((x - X0) // RES)


def sample(maps, name, **params):
    out = str(maps["folder"] / f"{name}.gpkg")
    params = dict(dict(SAMPLE_SIZE=90, MIN_PER_CLASS=20, SEED=3), **params)
    result = run("samplepoints", INPUT=maps["map"], CLASS_NAMES=NAMES, OUTPUT=out, **params)
    return result, out


def labelled(maps, name, **params):
    """A sample labelled from the truth raster; returns (path, labels fid -> class)."""
    _, out = sample(maps, name, **params)
    labels = {fid: int(maps["truth"][cell(x, y)]) for fid, (_, x, y) in points(out).items()}
    label(out, labels)
    return out, labels


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_samplepoints_respects_the_allocation_and_samples_only_its_strata(maps):
    result, out = sample(
        maps,
        "alloc",
        ALLOCATION="minimum_then_proportional",
        OUTPUT_TABLE=str(maps["folder"] / "alloc.csv"),
    )
    array = maps["array"]
    pixels = [int((array == k).sum()) for k in (1, 2, 3)]
    # 20 each, then 30 in proportion to area (largest remainders), by hand:
    exact = [30 * n / sum(pixels) for n in pixels]
    floor = [int(e) for e in exact]
    order = sorted(range(3), key=lambda i: -(exact[i] - floor[i]))
    for i in order[: 30 - sum(floor)]:
        floor[i] += 1
    expected = [20 + f for f in floor]
    found = points(out)
    assert result["POINTS"] == len(found) == 90
    assert [sum(v[0] == k for v in found.values()) for k in (1, 2, 3)] == expected
    for map_class, x, y in found.values():
        assert array[cell(x, y)] == map_class  # inside its stratum, never on nodata
    table = read_csv(maps["folder"] / "alloc.csv")
    assert [int(r["points"]) for r in table] == expected
    assert [int(r["pixels"]) for r in table] == pixels


def test_evaluate_with_stratified_points_matches_a_hand_computation(maps):
    out, labels = labelled(maps, "labelled")
    found = points(out)
    counts = [[0] * 3 for _ in range(3)]
    for fid, (map_class, _, _) in found.items():
        counts[map_class - 1][labels[fid] - 1] += 1
    pixels = [int((maps["array"] == k).sum()) for k in (1, 2, 3)]
    ref = hand(counts, pixels, RES * RES / 10000)
    areas = str(maps["folder"] / "areas.csv")
    html = str(maps["folder"] / "report.html")
    result = run(
        "evaluate",
        PREDICTION=maps["map"],
        REFERENCE=out,
        CLASS_NAMES=NAMES,
        OUTPUT_AREAS=areas,
        OUTPUT_HTML=html,
    )
    rows = read_csv(areas)
    assert list(rows[0]) == [
        "class_id",
        "class_name",
        "mapped_ha",
        "estimated_ha",
        "estimated_ha_ci95",
        "users_accuracy",
        "users_accuracy_ci95",
        "producers_accuracy",
        "producers_accuracy_ci95",
    ]
    for k, row in enumerate(rows):
        assert row["class_name"] == NAMES.split(",")[k]
        assert float(row["mapped_ha"]) == pytest.approx(pixels[k] * 0.01, abs=1e-9)
        assert float(row["estimated_ha"]) == pytest.approx(ref["area"][k], abs=1e-8)
        assert float(row["estimated_ha_ci95"]) == pytest.approx(ref["area_ci"][k], abs=1e-8)
        assert float(row["users_accuracy"]) == pytest.approx(ref["users"][k], abs=1e-8)
        assert float(row["producers_accuracy"]) == pytest.approx(ref["producers"][k], abs=1e-8)
        assert float(row["producers_accuracy_ci95"]) == pytest.approx(
            ref["producers_ci"][k], abs=1e-8
        )
    assert result["OVERALL_ACCURACY"] == pytest.approx(ref["oa"], abs=1e-9)
    page = open(html, encoding="utf-8").read()
    assert "data:image/png;base64," in page and "estimated ha" in page


def test_points_in_another_crs_are_reprojected(maps):
    from osgeo import gdal

    out, _ = labelled(maps, "utm")
    wgs84 = str(maps["folder"] / "wgs84.gpkg")
    gdal.VectorTranslate(wgs84, out, dstSRS="EPSG:4326", reproject=True)
    results = []
    for source in (out, wgs84):
        target = str(maps["folder"] / f"areas_{os.path.basename(source)}.csv")
        run(
            "evaluate",
            PREDICTION=maps["map"],
            REFERENCE=source,
            CLASS_NAMES=NAMES,
            OUTPUT_AREAS=target,
        )
        results.append(read_csv(target))
    assert results[0] == results[1]


def test_skipped_points_are_counted_and_a_thin_stratum_is_reported_per_class(maps):
    from qgis.core import QgsProcessingFeedback

    out, labels = labelled(maps, "thin")
    water = [fid for fid, (k, _, _) in points(out).items() if k == 1]
    label(out, {fid: None for fid in water[1:]})  # one labelled water point left

    class Log(QgsProcessingFeedback):
        lines = []

        def reportError(self, text, fatal=False):
            self.lines.append(text)

        def pushWarning(self, text):
            self.lines.append(text)

        def pushInfo(self, text):
            self.lines.append(text)

    import processing

    areas = str(maps["folder"] / "thin.csv")
    log = Log()
    processing.run(
        "wetlandunet:evaluate",
        dict(PREDICTION=maps["map"], REFERENCE=out, CLASS_NAMES=NAMES, OUTPUT_AREAS=areas),
        feedback=log,
    )
    rows = read_csv(areas)
    assert rows[0]["estimated_ha"] == "" and rows[0]["users_accuracy"] == ""
    assert rows[1]["estimated_ha"] != "" and rows[2]["estimated_ha"] != ""
    text = "\n".join(log.lines)
    assert f"{len(water) - 1} of 90 points skipped: empty reference" in text
    assert "water: 1 labelled point(s)" in text


@pytest.mark.parametrize(
    "case, message",
    [
        ("strata", "strata do not match the map's classes"),
        ("value", "not classes of the map: '7'"),
        ("name", "'marsh'"),
        ("field", "no field 'truth'"),
    ],
)
def test_bad_points_fail_clearly_and_write_nothing(maps, case, message):
    from qgis.core import QgsProcessingException

    out, labels = labelled(maps, f"bad_{case}")
    params = dict(PREDICTION=maps["map"], REFERENCE=out, CLASS_NAMES=NAMES)
    if case == "strata":
        params["PREDICTION"] = maps["other"]
    elif case == "value":
        label(out, {next(iter(labels)): 7})
    elif case == "name":
        label(out, {next(iter(labels)): None})
        from osgeo import ogr

        # A text field with names, one unknown.
        ds = ogr.Open(out, 1)
        layer = ds.GetLayer(0)
        layer.CreateField(ogr.FieldDefn("label", ogr.OFTString))
        ds.StartTransaction()
        for i, feature in enumerate(layer):
            feature.SetField("label", "marsh" if i == 0 else "forest")
            layer.SetFeature(feature)
        ds.CommitTransaction()
        ds = None
        params["REFERENCE_FIELD"] = "label"
    elif case == "field":
        params["REFERENCE_FIELD"] = "truth"
    areas = str(maps["folder"] / f"bad_{case}.csv")
    html = str(maps["folder"] / f"bad_{case}.html")
    with pytest.raises(QgsProcessingException, match=message):
        run("evaluate", OUTPUT_AREAS=areas, OUTPUT_HTML=html, **params)
    assert not os.path.exists(areas) and not os.path.exists(html)


def test_class_names_in_the_reference_field_are_accepted(maps):
    from osgeo import ogr

    out, labels = labelled(maps, "names")
    ds = ogr.Open(out, 1)
    layer = ds.GetLayer(0)
    layer.CreateField(ogr.FieldDefn("label", ogr.OFTString))
    ds.StartTransaction()
    for feature in layer:
        feature.SetField("label", NAMES.split(",")[labels[feature.GetFID()] - 1].upper())
        layer.SetFeature(feature)
    ds.CommitTransaction()
    ds = None
    a, b = (str(maps["folder"] / f"names_{f}.csv") for f in ("id", "name"))
    run("evaluate", PREDICTION=maps["map"], REFERENCE=out, CLASS_NAMES=NAMES, OUTPUT_AREAS=a)
    run(
        "evaluate",
        PREDICTION=maps["map"],
        REFERENCE=out,
        CLASS_NAMES=NAMES,
        OUTPUT_AREAS=b,
        REFERENCE_FIELD="label",
    )
    assert read_csv(a) == read_csv(b)


def test_sample_size_below_two_per_class_fails_before_writing(maps):
    from qgis.core import QgsProcessingException

    out = str(maps["folder"] / "tiny.gpkg")
    with pytest.raises(QgsProcessingException, match="SAMPLE_SIZE 5 is too small.*at least 6"):
        run("samplepoints", INPUT=maps["map"], CLASS_NAMES=NAMES, SAMPLE_SIZE=5, OUTPUT=out)
    assert not os.path.exists(out)


def test_sample_size_zero_uses_equation_13(maps):
    import math

    array = maps["array"]
    pixels = np.array([(array == k).sum() for k in (1, 2, 3)], dtype=float)
    w = pixels / pixels.sum()
    n = math.ceil((sum(wi * math.sqrt(0.8 * 0.2) for wi in w) / 0.05) ** 2)
    result, out = sample(
        maps, "eq13", SAMPLE_SIZE=0, TARGET_STANDARD_ERROR=0.05, ALLOCATION="proportional"
    )
    assert result["POINTS"] == len(points(out)) == n


def test_points_without_map_class_need_stratified_for_areas(maps):
    """STRATIFIED on takes the strata from the map under the points: the same estimates
    as with map_class; off, the points are compared as they are and areas are refused."""
    from osgeo import gdal
    from qgis.core import QgsProcessingException

    out, labels = labelled(maps, "strata_field")
    plain = str(maps["folder"] / "plain.gpkg")
    gdal.VectorTranslate(plain, out, SQLStatement="SELECT geom, reference FROM strata_field")
    a, b = (str(maps["folder"] / f"strat_{n}.csv") for n in ("field", "flag"))
    run("evaluate", PREDICTION=maps["map"], REFERENCE=out, CLASS_NAMES=NAMES, OUTPUT_AREAS=a)
    run(
        "evaluate",
        PREDICTION=maps["map"],
        REFERENCE=plain,
        CLASS_NAMES=NAMES,
        STRATIFIED=True,
        OUTPUT_AREAS=b,
    )
    assert read_csv(a) == read_csv(b)
    c = str(maps["folder"] / "strat_none.csv")
    with pytest.raises(QgsProcessingException, match="OUTPUT_AREAS needs a stratified sample"):
        run("evaluate", PREDICTION=maps["map"], REFERENCE=plain, CLASS_NAMES=NAMES, OUTPUT_AREAS=c)
    assert not os.path.exists(c)
    # Unweighted: the share of points whose label equals the map class under them.
    found = points(out)
    agree = sum(labels[fid] == k for fid, (k, _, _) in found.items()) / len(found)
    result = run("evaluate", PREDICTION=maps["map"], REFERENCE=plain, CLASS_NAMES=NAMES)
    assert result["OVERALL_ACCURACY"] == pytest.approx(agree, abs=1e-12)


def test_output_areas_with_a_reference_raster_is_refused(maps):
    from qgis.core import QgsProcessingException

    areas = str(maps["folder"] / "raster_areas.csv")
    with pytest.raises(QgsProcessingException, match="OUTPUT_AREAS needs a REFERENCE of labelled"):
        run(
            "evaluate",
            PREDICTION=maps["map"],
            REFERENCE=maps["other"],
            OUTPUT_AREAS=areas,
            CLASS_NAMES=NAMES,
        )
    assert not os.path.exists(areas)
