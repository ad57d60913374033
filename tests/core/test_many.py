"""Many scenes without TensorFlow: names and dates, the mosaic's overlap rule, hectares,
merging the tables and maps of several runs (Slurm array tasks), and the checks that
refuse a batch before any work.

Maps, probabilities and tables are hand-made; expected mosaics are written out by hand.
"""

import csv
import json
import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from tests.rasters import write_raster
from wetland_unet_plugin.core.feedback import CoreError
from wetland_unet_plugin.core.inference.many import predict_many
from wetland_unet_plugin.core.merge import merge_many
from wetland_unet_plugin.core.mosaic import build_mosaic
from wetland_unet_plugin.core.scenetable import COLUMNS, acquired, class_areas, item_id

CRS = "EPSG:32618"
#: 10 m pixels: 0.01 ha each.
PIXEL_HA = 0.01
NAMES = ["water", "wetland", "forest"]

# Two 2 x 5 maps; B starts 3 columns east of A, so A's columns 3-4 are B's columns 0-1.
A_CLASSES = np.array([[1, 1, 2, 2, 3], [1, 0, 2, 3, 0]], dtype=np.uint8)
B_CLASSES = np.array([[2, 3, 3, 3, 1], [2, 2, 0, 1, 1]], dtype=np.uint8)
# Confidence (probability x 254 of the pixel's own class) in the overlap:
# row 0: A 200 vs B 100 -> A; A 120 vs B 180 -> B
# row 1: A 150 vs B 150 -> tie, A (listed first); A nodata vs B 90 -> B
A_CONF = np.array([[254, 254, 254, 200, 120], [254, 0, 254, 150, 0]], dtype=np.uint8)
B_CONF = np.array([[100, 180, 254, 254, 254], [150, 90, 0, 254, 254]], dtype=np.uint8)
MOSAIC = np.array([[1, 1, 2, 2, 3, 3, 3, 1], [1, 0, 2, 3, 2, 0, 1, 1]], dtype=np.uint8)


def write_pair(folder, stem, classes, conf, col0):
    """A class map and its probabilities (own class = conf, the rest shared) at column col0."""
    transform = from_origin(500000.0 + 10 * col0, 4000000.0, 10.0, 10.0)
    probs = np.zeros((3,) + classes.shape, dtype=np.uint8)
    for k in range(3):
        probs[k] = np.where(classes == k + 1, conf, (254 - conf.astype(int)) // 2)
    probs[:, classes == 0] = 255
    c = write_raster(os.path.join(folder, f"{stem}_classes.tif"), classes, CRS, transform, nodata=0)
    p = write_raster(
        os.path.join(folder, f"{stem}_probabilities.tif"), probs, CRS, transform, nodata=255
    )
    return c, p


def write_table(path, rows, names=NAMES):
    """A predictmany table written by hand (rows: scene, item_id, status, valid, per class)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS + [f"{n}_ha" for n in names])
        for scene, item, status, per_class in rows:
            valid = sum(per_class) if per_class else ""
            writer.writerow(
                [scene, item, "", status, "" if status != "failed" else "boom", valid, 0.0]
                + (list(per_class) or [""] * len(names))
            )
        writer.writerow(["TOTAL"] + [""] * (len(COLUMNS) - 1 + len(names)))
    return str(path)


def test_item_ids_and_acquisition_dates(tmp_path):
    planet = tmp_path / "20230405_151523_42_2474_3B_AnalyticMS_SR_8b_harmonized_clip.tif"
    assert item_id(str(planet)) == "20230405_151523_42_2474"
    assert item_id("/x/20170623_180038_0f34_3B_AnalyticMS.tif") == "20170623_180038_0f34"
    assert item_id("/x/my scene.v2.tif") == "my scene.v2"
    assert acquired(str(planet)) == "2023-04-05T15:15:23Z"
    assert acquired("/x/field.tif") == ""
    meta = {"properties": {"acquired": "2023-04-05T15:15:23.421Z"}}
    (tmp_path / "20230405_151523_42_2474_metadata.json").write_text(json.dumps(meta))
    assert acquired(str(planet)) == "2023-04-05T15:15:23.421Z"


def test_mosaic_most_confident_wins_nodata_never(tmp_path):
    a = write_pair(str(tmp_path), "a", A_CLASSES, A_CONF, 0)
    b = write_pair(str(tmp_path), "b", B_CLASSES, B_CONF, 3)
    out = str(tmp_path / "mosaic.tif")
    result = build_mosaic([a, b], out)
    assert (result["width"], result["height"]) == (8, 2)
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), MOSAIC)
        assert src.nodata == 0
        assert (src.transform.c, src.transform.f, src.transform.a) == (500000.0, 4000000.0, 10.0)
    # The order of the list only matters for ties: B first wins the tie at row 1, column 3.
    build_mosaic([b, a], out)
    with rasterio.open(out) as src:
        swapped = MOSAIC.copy()
        swapped[1, 3] = B_CLASSES[1, 0]
        np.testing.assert_array_equal(src.read(1), swapped)


def test_mosaic_in_another_crs_covers_both_scenes(tmp_path):
    a = write_pair(str(tmp_path), "a", A_CLASSES, A_CONF, 0)
    b = write_pair(str(tmp_path), "b", B_CLASSES, B_CONF, 3)
    out = str(tmp_path / "mosaic_utm17.tif")
    build_mosaic([a, b], out, target_crs="EPSG:32617")
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 32617
        counts = np.bincount(src.read(1).ravel(), minlength=4)
    # Nearest-neighbour warping keeps every class and roughly the 14 mapped pixels.
    assert all(counts[1:] > 0) and 8 <= counts[1:].sum() <= 24


def test_class_areas_are_pixels_times_pixel_area(tmp_path):
    path = write_raster(str(tmp_path / "m.tif"), A_CLASSES, CRS, None, nodata=0)
    pixels, hectares = class_areas(path, 3)
    np.testing.assert_array_equal(pixels, [2, 3, 3, 2])
    np.testing.assert_allclose(hectares, np.array([2, 3, 3, 2]) * PIXEL_HA)


def test_merge_tables_and_maps_of_array_tasks(tmp_path):
    maps = tmp_path / "maps"
    maps.mkdir()
    write_pair(str(maps), "a", A_CLASSES, A_CONF, 0)
    write_pair(str(maps), "b", B_CLASSES, B_CONF, 3)
    tables = tmp_path / "tables"
    tables.mkdir()
    # Task 1 mapped A; B failed there and succeeded in task 2 (a rerun).
    write_table(
        tables / "task1.csv",
        [("a.tif", "a", "done", (0.03, 0.03, 0.02)), ("b.tif", "b", "failed", ())],
    )
    write_table(
        tables / "task2.csv",
        [("b.tif", "b", "done", (0.02, 0.03, 0.03)), ("c.tif", "c", "failed", ())],
    )
    result = merge_many(
        tables=str(tables),
        folder=str(maps),
        output_table=str(tmp_path / "all.csv"),
        output_mosaic=str(tmp_path / "all.tif"),
    )
    assert (result["scenes_done"], result["scenes_failed"]) == (2, 1)
    with open(tmp_path / "all.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["scene"], r["status"]) for r in rows] == [
        ("a.tif", "done"),
        ("b.tif", "done"),
        ("c.tif", "failed"),
        ("TOTAL", ""),
    ]
    total = rows[-1]
    assert float(total["water_ha"]) == pytest.approx(0.05)
    assert float(total["forest_ha"]) == pytest.approx(0.05)
    assert float(total["valid_ha"]) == pytest.approx(0.16)
    with rasterio.open(tmp_path / "all.tif") as src:
        np.testing.assert_array_equal(src.read(1), MOSAIC)


def test_merge_refuses_bad_tables_and_missing_maps_writing_nothing(tmp_path):
    one = write_table(tmp_path / "one.csv", [("a.tif", "a", "done", (0.01, 0.0, 0.0))])
    other = write_table(
        tmp_path / "other.csv", [("b.tif", "b", "done", (0.01, 0.0))], names=["water", "land"]
    )
    out = str(tmp_path / "out.csv")
    with pytest.raises(CoreError, match="same model"):
        merge_many(tables=f"{one};{other}", output_table=out)
    with pytest.raises(CoreError, match="does not exist"):
        merge_many(tables=f"{one};{tmp_path / 'nope.csv'}", output_table=out)
    with pytest.raises(CoreError, match="x.csv"):
        merge_many(tables=write_raster(str(tmp_path / "x.csv"), A_CLASSES), output_table=out)
    with pytest.raises(CoreError, match="a_classes.tif is missing"):
        merge_many(
            tables=one,
            folder=str(tmp_path),
            output_table=out,
            output_mosaic=str(tmp_path / "m.tif"),
        )
    assert not os.path.exists(out) and not os.path.exists(tmp_path / "m.tif")


def test_batch_refused_before_work(tmp_path):
    """Two scenes that would write the same map, and a folder that cannot be made,
    fail at once (before the model is even loaded), leaving nothing behind."""
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    a = write_raster(str(tmp_path / "x" / "s.tif"), A_CLASSES)
    b = write_raster(str(tmp_path / "y" / "s.tif"), A_CLASSES)
    out = tmp_path / "out"
    with pytest.raises(CoreError, match="would both write s_classes.tif"):
        predict_many(inputs=[a, b], model="none.keras", output_folder=str(out))
    assert not out.exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CoreError, match="OUTPUT_FOLDER .* cannot be created"):
        predict_many(inputs=[a], model="none.keras", output_folder=str(blocker / "maps"))
    with pytest.raises(CoreError, match="TTA must be one of 1, 2, 4, 8"):
        predict_many(inputs=[a], model="none.keras", output_folder=str(out), tta=3)
