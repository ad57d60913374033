"""cleanmap: minimum mapping unit (longest-border merge, per-class units) and polygons.

Expected maps are drawn by hand; the "no patch under its unit" check labels patches
with scipy.ndimage; polygon areas come from their rings (shoelace), not from OGR.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

from tests.rasters import write_raster
from tests.recorder import Recorder
from wetland_unet_plugin.core.cleanmap import clean_map
from wetland_unet_plugin.core.feedback import Canceled, CoreError, Feedback
from wetland_unet_plugin.core.mmu import border_counts, label_strips, merge_small_patches

NAMES = "c1,c2,c3"
RES = 10.0  # 10 m pixels: 100 m2 = 0.01 ha each


def write(path, array, crs="EPSG:32633", res=RES, nodata=0):
    """A GeoTIFF of the test grid (origin 500000, 5800000; RES m pixels)."""
    return write_raster(
        path, array, crs=crs, transform=from_origin(500000, 5800000, res, res), nodata=nodata
    )


def read(path):
    with rasterio.open(path) as src:
        return src.read(1)


def halves():
    """Left half class 1, right half class 2, with four hand-placed patches."""
    m = np.ones((30, 30), np.uint8)
    m[:, 15:] = 2
    m[5:7, 13:15] = 3  # A: 4 px of c3; borders c1 on 3 sides (6 pairs), c2 on 1 (2 pairs)
    m[20:23, 3:6] = 3  # B: 9 px of c3
    m[10, 5] = 2  # C: 1 px of c2 inside c1
    m[25:27, 20:23] = 1  # D: 6 px of c1 inside c2
    return m


def test_small_patches_take_the_class_of_the_longest_border(tmp_path):
    src = write(tmp_path / "map.tif", halves())
    result = clean_map(
        src, str(tmp_path / "clean.tif"), class_names=NAMES, mmu_ha=0.05, connectivity=4
    )
    expected = halves()
    expected[5:7, 13:15] = 1  # A: 6 pairs of border with c1 against 2 with c2
    expected[10, 5] = 1  # C
    assert np.array_equal(read(tmp_path / "clean.tif"), expected)  # B (9 px), D (6 px) stay
    assert result["min_pixels"] == {"c1": 5, "c2": 5, "c3": 5}
    assert result["pixels_changed"] == 5
    assert result["class_hectares"]["c3"] == pytest.approx(0.09)


def test_per_class_units_override_the_common_one(tmp_path):
    src = write(tmp_path / "map.tif", halves())
    clean_map(
        src,
        str(tmp_path / "clean.tif"),
        class_names=NAMES,
        mmu_ha=0.05,
        mmu_per_class="c1=0.1, c3=0",
        connectivity=4,
    )
    expected = halves()
    expected[10, 5] = 1  # C: 1 px of c2, below c2's 5 px
    expected[25:27, 20:23] = 2  # D: 6 px of c1, below c1's 10 px
    # A (4 px of c3) stays: c3 has no unit
    assert np.array_equal(read(tmp_path / "clean.tif"), expected)


def patches_below_unit(classes, min_pixels, connectivity):
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    small = []
    for k, unit in min_pixels.items():
        labels, n = ndimage.label(classes == k, structure=structure)
        sizes = np.bincount(labels.ravel())[1:]
        small += [(k, int(s)) for s in sizes if s < unit]
    return small


def ring_area(points):
    xy = np.asarray(points)[:, :2]
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def read_polygons(path):
    from osgeo import ogr

    source = ogr.Open(str(path))
    layer = source.GetLayer(0)
    rows = []
    for feature in layer:
        geometry = feature.GetGeometryRef()
        rings = [geometry.GetGeometryRef(i).GetPoints() for i in range(geometry.GetGeometryCount())]
        area = ring_area(rings[0]) - sum(ring_area(r) for r in rings[1:])
        rows.append(
            {
                "fid": feature.GetFID(),
                "class_id": feature.GetField("class_id"),
                "class_name": feature.GetField("class_name"),
                "area_ha": feature.GetField("area_ha"),
                "mean_probability": feature.GetField("mean_probability"),
                "mean_uncertainty": feature.GetField("mean_uncertainty"),
                "ring_area_m2": area,
            }
        )
    return rows


def speckled(rows=60, cols=50, seed=5):
    """Smooth regions of 3 classes with 4 % salt-and-pepper noise and a nodata block."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random((rows, cols)), 4)
    m = np.digitize(field, np.quantile(field, [0.33, 0.66])).astype(np.uint8) + 1
    noise = rng.random((rows, cols)) < 0.04
    m[noise] = rng.integers(1, 4, noise.sum())
    m[:6, :8] = 0
    return m


@pytest.mark.parametrize("connectivity", [4, 8])
def test_no_patch_under_its_unit_and_polygon_areas_match_the_map(tmp_path, connectivity):
    m = speckled()
    src = write(tmp_path / "map.tif", m)
    # probabilities: band k is 0.1 k everywhere, float32 or predict's uint8 (p x 254, band
    # scale 1/254); uncertainty: the column index / 100
    probs = np.stack([np.full(m.shape, 0.1 * k, np.float32) for k in (1, 2, 3)])
    if connectivity == 4:
        prob_path = write(tmp_path / "p.tif", probs, nodata=-1.0)
        expected_probability = [0.1, 0.2, 0.3]
    else:
        prob_path = write(tmp_path / "p.tif", np.rint(probs * 254).astype(np.uint8), nodata=255)
        with rasterio.open(prob_path, "r+") as ds:
            ds.scales = [1 / 254] * 3
        expected_probability = [round(25.4 * k) / 254 for k in (1, 2, 3)]
    unc = np.tile(np.arange(m.shape[1], dtype=np.float32) / 100, (m.shape[0], 1))
    unc_path = write(tmp_path / "u.tif", unc, nodata=-1.0)
    from osgeo import gdal

    exceptions_before = gdal.GetUseExceptions()
    result = clean_map(
        src,
        str(tmp_path / "clean.tif"),
        class_names=NAMES,
        mmu_ha=0.08,
        mmu_per_class="c2=0.2",
        connectivity=connectivity,
        probabilities=prob_path,
        uncertainty=unc_path,
        output_polygons=str(tmp_path / "poly.gpkg"),
    )
    # GDAL's exception mode is process-wide: polygonizing must leave it as it found it
    assert gdal.GetUseExceptions() == exceptions_before
    cleaned = read(tmp_path / "clean.tif")
    assert np.array_equal(cleaned == 0, m == 0)  # nodata stays nodata, nothing fills it
    assert patches_below_unit(cleaned, {1: 8, 2: 20, 3: 8}, connectivity) == []
    assert result["patches_merged"] > 20 and result["patches_kept_isolated"] == 0

    polygons = read_polygons(tmp_path / "poly.gpkg")
    assert result["polygons"] == len(polygons)
    for k, name in enumerate(NAMES.split(","), start=1):
        mine = [p for p in polygons if p["class_id"] == k]
        assert all(p["class_name"] == name for p in mine)
        map_m2 = np.sum(cleaned == k) * RES * RES
        ring_m2 = sum(p["ring_area_m2"] for p in mine)
        assert ring_m2 == pytest.approx(map_m2, rel=0.005)
        assert sum(p["area_ha"] for p in mine) == pytest.approx(map_m2 / 10_000, rel=0.005)
        want = expected_probability[k - 1]
        assert all(p["mean_probability"] == pytest.approx(want, abs=1e-6) for p in mine)
    # mean uncertainty of each polygon = mean column / 100 of its pixels (rasterized here)
    from osgeo import gdal

    burned = gdal.Rasterize(
        "/vsimem/ids.tif",
        str(tmp_path / "poly.gpkg"),
        format="GTiff",
        outputType=gdal.GDT_Int32,
        width=m.shape[1],
        height=m.shape[0],
        outputBounds=[500000, 5800000 - m.shape[0] * RES, 500000 + m.shape[1] * RES, 5800000],
        attribute="patch_id",
        noData=0,
    )
    ids = burned.ReadAsArray()
    burned = None
    gdal.Unlink("/vsimem/ids.tif")
    cols = np.tile(np.arange(m.shape[1]), (m.shape[0], 1))
    from osgeo import ogr

    source = ogr.Open(str(tmp_path / "poly.gpkg"))  # keep it open while the layer is read
    for feature in source.GetLayer(0):
        pid = feature.GetField("patch_id")
        assert feature.GetField("mean_uncertainty") == pytest.approx(
            cols[ids == pid].mean() / 100, abs=1e-5
        )


def test_class_names_come_from_the_maps_tags(tmp_path):
    src = write(tmp_path / "map.tif", halves())
    with rasterio.open(src, "r+") as ds:
        ds.update_tags(class_names='["water", "wetland", "forest"]')
    result = clean_map(src, str(tmp_path / "c.tif"), mmu_ha=0.05)
    assert result["class_names"] == ["water", "wetland", "forest"]


def test_bad_inputs_fail_before_anything_is_written(tmp_path):
    src = write(tmp_path / "map.tif", halves())
    out = str(tmp_path / "c.tif")
    cases = [
        (dict(mmu_ha=-1), "MMU_HA must be at least 0"),
        (dict(mmu_ha=0.005), "smaller than one pixel"),
        (dict(mmu_per_class="c2=0.001"), "c2 .* smaller than one pixel"),
        (dict(mmu_per_class="reed=0.1"), "'reed=0.1' is not <class>=<hectares>.*c1, c2, c3"),
        (dict(mmu_per_class="c1=-2"), "0 or more"),
        (dict(connectivity=6), "CONNECTIVITY must be one of 4, 8"),
        (dict(class_names="a,b"), "ids 0..3 but 2 classes"),
        (dict(output_polygons=str(tmp_path / "p.shp")), "GeoPackage"),
        (dict(output_polygons=str(tmp_path / "no" / "p.gpkg")), "does not exist"),
    ]
    for extra, message in cases:
        params = dict({"class_names": NAMES}, **extra)
        with pytest.raises(CoreError, match=message):
            clean_map(src, out, **params)
    with pytest.raises(CoreError, match="class names are unknown"):
        clean_map(src, out)
    with pytest.raises(CoreError, match="also an input"):
        clean_map(src, src, class_names=NAMES)
    degrees = write(tmp_path / "deg.tif", halves(), crs="EPSG:4326", res=0.0001)
    with pytest.raises(CoreError, match="in degrees.*projected CRS"):
        clean_map(degrees, out, class_names=NAMES)
    other_grid = write(tmp_path / "u.tif", np.zeros((20, 30), np.float32), nodata=-1.0)
    with pytest.raises(CoreError, match="UNCERTAINTY is not on the class map's grid"):
        clean_map(src, out, class_names=NAMES, uncertainty=other_grid)
    assert sorted(os.listdir(tmp_path)) == ["deg.tif", "map.tif", "u.tif"]


class CancelAfter(Feedback):
    """Cancels once ``is_canceled`` has been asked ``n`` times."""

    def __init__(self, n):
        self.n = n
        self.calls = 0

    def is_canceled(self):
        self.calls += 1
        return self.calls > self.n


@pytest.mark.parametrize(
    "feedback",
    [CancelAfter(0), CancelAfter(4), Recorder(cancel_on="patch merges in")],
    ids=["reading", "merging", "polygonizing"],
)
def test_cancel_leaves_no_output(tmp_path, feedback):
    """Canceled at any stage: neither output nor the scratch files are left."""
    src = write(tmp_path / "map.tif", speckled())
    with pytest.raises(Canceled):
        clean_map(
            src,
            str(tmp_path / "clean.tif"),
            class_names=NAMES,
            mmu_ha=0.05,
            output_polygons=str(tmp_path / "poly.gpkg"),
            feedback=feedback,
        )
    assert sorted(os.listdir(tmp_path)) == ["map.tif"]


@pytest.mark.parametrize("connectivity", [4, 8])
def test_strips_give_the_same_map_as_the_whole_map_at_once(connectivity):
    """Merging in strips of 1, 2, 3 or 7 rows equals merging the map as one block.

    The strip borders cut patches (the speckled field's regions span all rows), so
    the labels of a patch must be joined across borders and its size and borders
    counted once; the final patches are compared pixel by pixel with ``ndimage.label``
    of the result.
    """
    m = speckled(rows=45, cols=40, seed=11)
    min_pixels = np.array([0, 6, 3, 9])  # a different unit per class
    results = {}
    for rows in (None, 1, 2, 3, 7):
        classes = m.copy()
        labels = np.zeros(m.shape, np.int32)
        root, patch_class, stats = merge_small_patches(
            classes, labels, min_pixels, connectivity, strip_rows=rows
        )
        results[rows] = (classes, root[labels], stats)
        assert np.array_equal(patch_class[root[labels]], classes)
    whole, whole_labels, whole_stats = results[None]
    assert whole_stats["merged"] > 20 and not np.array_equal(whole, m)
    for rows in (1, 2, 3, 7):
        assert np.array_equal(results[rows][0], whole), rows
        assert np.array_equal(results[rows][1], whole_labels), rows
        assert results[rows][2] == whole_stats, rows
    # independently: every patch of the result is one label, none below its unit
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    for k in (1, 2, 3):
        lab, n = ndimage.label(whole == k, structure=structure)
        sizes = np.bincount(lab.ravel())[1:]
        assert sizes.min() >= min_pixels[k]
        assert len(np.unique(whole_labels[whole == k])) == n


def test_a_small_patch_alone_in_nodata_is_kept_and_counted(tmp_path):
    m = np.zeros((20, 20), np.uint8)
    m[:, :10] = 1  # a large patch of class 1
    m[5, 10] = 2  # 1 px of class 2 touching it: merged
    m[15:17, 15] = 3  # 2 px of class 3 surrounded by nodata: no neighbour to merge into
    src = write(tmp_path / "map.tif", m)
    result = clean_map(src, str(tmp_path / "c.tif"), class_names=NAMES, mmu_ha=0.05)
    expected = m.copy()
    expected[5, 10] = 1
    assert np.array_equal(read(tmp_path / "c.tif"), expected)
    assert result["patches_kept_isolated"] == 1 and result["patches_merged"] == 1


@pytest.mark.parametrize("connectivity", [4, 8])
def test_borders_counted_in_strips_equal_a_hand_count(connectivity):
    """Shared borders of small patches, counted strip by strip, equal a direct count.

    The direct count walks every pair of neighbouring pixels of the labelled map
    (scipy's whole-map labels) in Python.
    """
    m = speckled(rows=20, cols=18, seed=3)
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    lab = np.zeros(m.shape, np.int64)
    for k in (1, 2, 3):  # class-major numbering, raster order within a class
        part, n = ndimage.label(m == k, structure=structure)
        lab[part > 0] = part[part > 0] + lab.max()
    sizes = np.bincount(lab.ravel())
    small = sizes < 4
    small[0] = False
    expected = {}
    steps = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if connectivity == 8 else [])
    for y in range(m.shape[0]):
        for x in range(m.shape[1]):
            for dy, dx in steps:
                v, u = y + dy, x + dx
                if not (0 <= v < m.shape[0] and 0 <= u < m.shape[1]):
                    continue
                for a, b in ((lab[y, x], lab[v, u]), (lab[v, u], lab[y, x])):
                    if a != b and small[a] and b > 0:
                        expected[(a, b)] = expected.get((a, b), 0) + 1
    for rows in (1, 2, 5, 100):
        labels = np.zeros(m.shape, np.int32)
        root, _, strip_sizes = label_strips(m, labels, 3, connectivity, rows, Feedback())
        assert np.array_equal(root[labels], lab) and np.array_equal(strip_sizes[1:], sizes[1:])
        pa, pb, border = border_counts(labels, root, small, connectivity, rows, Feedback())
        assert dict(zip(zip(pa.tolist(), pb.tolist()), border.tolist())) == expected, rows
