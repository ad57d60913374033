"""wetlandunet:predictmany through processing.run: a folder of maps, a table of hectares,
a failed row for a corrupt scene, a mosaic by the most-confident rule, resuming."""

import csv
import json
import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from tests.core.synthetic import make_scene

#: Scene grids: 3 m pixels (9 m2 = 0.0009 ha); B starts 32 pixels east of A, so they
#: overlap on 32 columns.
PIXEL_HA = 3.0 * 3.0 / 10_000
A_ORIGIN = (500000.0, 4500000.0)
B_ORIGIN = (500000.0 + 32 * 3.0, 4500000.0)
PLANET = "20230405_151523_42_2474_3B_AnalyticMS_SR_clip.tif"


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Scene A, a truncated (corrupt) scene, and a Planet-named scene B with its metadata."""
    folder = tmp_path_factory.mktemp("many")
    a = str(folder / "alpha.tif")
    make_scene(a, 64, 64, seed=21, transform=from_origin(*A_ORIGIN, 3.0, 3.0))
    bad = str(folder / "broken.tif")
    make_scene(bad, 96, 96, seed=22)
    size = os.path.getsize(bad)
    with open(bad, "r+b") as f:
        f.truncate(size // 3)
    b = str(folder / PLANET)
    make_scene(b, 64, 64, seed=23, transform=from_origin(*B_ORIGIN, 3.0, 3.0))
    with open(folder / "20230405_151523_42_2474_metadata.json", "w") as f:
        json.dump({"properties": {"acquired": "2023-04-05T15:15:23.42Z"}}, f)
    return {"folder": folder, "a": a, "bad": bad, "b": b}


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read(path, bands=None):
    with rasterio.open(path) as src:
        return src.read(bands) if bands else src.read()


@pytest.mark.slow
def test_many_scenes_maps_table_mosaic_and_resume(trained, batch, tmp_path):
    import processing

    out = tmp_path / "maps"
    params = {
        "INPUTS": [batch["a"], batch["bad"], batch["b"]],
        "MODEL": trained["OUTPUT_MODEL"],
        "OUTPUT_FOLDER": str(out),
        "OUTPUT_TABLE": str(tmp_path / "scenes.csv"),
        "OUTPUT_MOSAIC": str(tmp_path / "mosaic.tif"),
        "KEEP_UNCERTAINTY": True,
    }
    result = processing.run("wetlandunet:predictmany", params)
    assert result["SCENES_DONE"] == 2 and result["SCENES_FAILED"] == 1
    a_map, b_map = out / "alpha_classes.tif", out / "20230405_151523_42_2474_classes.tif"
    for path in (a_map, b_map):
        assert path.exists() and path.with_suffix(".qml").exists()
    assert not (out / "broken_classes.tif").exists()
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no partial file left

    rows = read_rows(tmp_path / "scenes.csv")
    assert [r["scene"] for r in rows] == [batch["a"], batch["bad"], batch["b"], "TOTAL"]
    by_scene = {os.path.basename(r["scene"]): r for r in rows}
    failed = by_scene["broken.tif"]
    assert failed["status"] == "failed" and "broken.tif" in failed["message"], failed
    b_row = by_scene[PLANET]
    assert b_row["item_id"] == "20230405_151523_42_2474"
    assert b_row["acquired"] == "2023-04-05T15:15:23.42Z"
    assert by_scene["alpha.tif"]["item_id"] == "alpha" and by_scene["alpha.tif"]["acquired"] == ""
    names = ["water", "wetland", "forest"]
    for name, path in (("alpha.tif", a_map), (PLANET, b_map)):
        row = by_scene[name]
        assert row["status"] == "done"
        counts = np.bincount(read(path, 1).ravel(), minlength=4)
        assert counts[1:].sum() == 64 * 64  # synthetic scenes have no invalid pixel
        for k, cls in enumerate(names, start=1):
            assert float(row[f"{cls}_ha"]) == pytest.approx(counts[k] * PIXEL_HA, abs=1e-6)
        assert float(row["valid_ha"]) == pytest.approx(64 * 64 * PIXEL_HA, abs=1e-6)
        assert float(row["masked_ha"]) == 0.0
    total = by_scene["TOTAL"]
    assert float(total["valid_ha"]) == pytest.approx(2 * 64 * 64 * PIXEL_HA, abs=1e-5)
    assert "2 scenes mapped, 1 failed" in total["message"]

    # The mosaic: one grid over A and B (96 x 64 pixels from A's corner); where they
    # overlap, the scene whose probability of its own class is higher wins, A on a tie.
    with rasterio.open(tmp_path / "mosaic.tif") as src:
        mosaic = src.read(1)
        assert (src.width, src.height) == (96, 64)
        assert (src.transform.c, src.transform.f) == A_ORIGIN
    a_cls, b_cls = read(a_map, 1), read(b_map, 1)
    a_p = read(out / "alpha_probabilities.tif")
    b_p = read(out / "20230405_151523_42_2474_probabilities.tif")
    a_conf = np.take_along_axis(a_p, a_cls[None].astype(int) - 1, 0)[0]
    b_conf = np.take_along_axis(b_p, b_cls[None].astype(int) - 1, 0)[0]
    expected = np.zeros((64, 96), dtype=np.uint8)
    expected[:, :64] = a_cls
    expected[:, 64:] = b_cls[:, 32:]
    overlap_b = b_conf[:, :32] > a_conf[:, 32:]
    expected[:, 32:64] = np.where(overlap_b, b_cls[:, :32], a_cls[:, 32:])
    assert overlap_b.any() and (~overlap_b).any()  # both scenes win somewhere
    np.testing.assert_array_equal(mosaic, expected)

    # Uncertainty: the normalised entropy of the averaged probabilities (kept as uint8).
    uncertainty = read(out / "alpha_uncertainty.tif", 1)
    assert (out / "alpha_uncertainty.qml").exists()
    p = np.clip(a_p.astype(float) / 254, 1e-9, 1)
    entropy = -(p * np.log(p)).sum(axis=0) / np.log(3)
    np.testing.assert_allclose(uncertainty, entropy, atol=0.03)

    # Resume: nothing is predicted again, the table says so with the same hectares.
    stamps = {p: os.path.getmtime(p) for p in (a_map, b_map, out / "alpha_uncertainty.tif")}
    again = processing.run(
        "wetlandunet:predictmany",
        dict(params, SKIP_EXISTING=True, OUTPUT_TABLE=str(tmp_path / "again.csv")),
    )
    assert again["SCENES_DONE"] == 2 and again["SCENES_FAILED"] == 1
    assert {p: os.path.getmtime(p) for p in stamps} == stamps
    rows2 = read_rows(tmp_path / "again.csv")
    assert [r["status"] for r in rows2[:3]] == ["skipped", "failed", "skipped"]
    for old, new in zip(rows, rows2):
        assert old["valid_ha"] == new["valid_ha"] and old["forest_ha"] == new["forest_ha"]


@pytest.mark.slow
def test_unwritable_output_folder_is_refused_before_work(trained, batch, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(QgsProcessingException, match="OUTPUT_FOLDER .* cannot be created"):
        processing.run(
            "wetlandunet:predictmany",
            {
                "INPUTS": [batch["a"]],
                "MODEL": trained["OUTPUT_MODEL"],
                "OUTPUT_FOLDER": str(blocker / "maps"),
                "OUTPUT_TABLE": str(tmp_path / "t.csv"),
            },
        )
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_mergemany_joins_tables_and_styles_the_mosaic(provider, tmp_path):
    """mergemany through processing.run (in QGIS's process): two hand-made runs' tables
    and maps -> one table and the most-confident mosaic, styled with the maps' palette."""
    import processing

    from tests.core import test_many as hand
    from tests.core.test_many import MOSAIC, write_pair
    from tests.core.test_many import write_table as write_run_table

    maps = tmp_path / "maps"
    maps.mkdir()

    for pair in (
        write_pair(str(maps), "a", hand.A_CLASSES, hand.A_CONF, 0),
        write_pair(str(maps), "b", hand.B_CLASSES, hand.B_CONF, 3),
    ):
        with rasterio.open(pair[0], "r+") as dst:  # the tags predict writes
            dst.update_tags(
                class_names=json.dumps(hand.NAMES),
                class_colors=json.dumps(["#0000ff", "#00ffff", "#008000"]),
            )
    one = write_run_table(tmp_path / "one.csv", [("a.tif", "a", "done", (0.03, 0.03, 0.02))])
    two = write_run_table(tmp_path / "two.csv", [("b.tif", "b", "done", (0.02, 0.03, 0.03))])
    result = processing.run(
        "wetlandunet:mergemany",
        {
            "TABLES": f"{one};{two}",
            "FOLDER": str(maps),
            "OUTPUT_TABLE": str(tmp_path / "all.csv"),
            "OUTPUT_MOSAIC": str(tmp_path / "all.tif"),
        },
    )
    assert (result["SCENES_DONE"], result["SCENES_FAILED"]) == (2, 0)
    rows = read_rows(tmp_path / "all.csv")
    assert [r["scene"] for r in rows] == ["a.tif", "b.tif", "TOTAL"]
    assert float(rows[-1]["valid_ha"]) == pytest.approx(0.16)
    np.testing.assert_array_equal(read(tmp_path / "all.tif", 1), MOSAIC)
    assert (tmp_path / "all.qml").exists()


@pytest.mark.slow
def test_modeler_chain_predictmany_then_mergemany(trained, batch, tmp_path):
    """Both algorithms work as modeler blocks: a model classifies scenes with predictmany
    and hands its table and folder to mergemany, which rebuilds the table and mosaic."""
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterMultipleLayers,
    )

    source = QgsProcessingModelChildParameterSource
    model = QgsProcessingModelAlgorithm("many scenes", "tests")
    model.addModelParameter(
        QgsProcessingParameterMultipleLayers("scenes", "scenes", 3),  # 3: rasters
        QgsProcessingModelParameter("scenes"),
    )
    many = QgsProcessingModelChildAlgorithm("wetlandunet:predictmany")
    many.setChildId("many")
    many.addParameterSources("INPUTS", [source.fromModelParameter("scenes")])
    many.addParameterSources("MODEL", [source.fromStaticValue(trained["OUTPUT_MODEL"])])
    many.addParameterSources("KEEP_PROBABILITIES", [source.fromStaticValue(True)])
    many.addParameterSources("OUTPUT_FOLDER", [source.fromStaticValue(str(tmp_path / "maps"))])
    many.addParameterSources("OUTPUT_TABLE", [source.fromStaticValue(str(tmp_path / "t.csv"))])
    merge = QgsProcessingModelChildAlgorithm("wetlandunet:mergemany")
    merge.setChildId("merge")
    merge.addParameterSources("TABLES", [source.fromChildOutput("many", "OUTPUT_TABLE")])
    merge.addParameterSources("FOLDER", [source.fromChildOutput("many", "OUTPUT_FOLDER")])
    outputs = {}
    for name in ("OUTPUT_TABLE", "OUTPUT_MOSAIC"):
        outputs[name] = QgsProcessingModelOutput(name, name)
        outputs[name].setChildId("merge")
        outputs[name].setChildOutputName(name)
    merge.setModelOutputs(outputs)
    model.addChildAlgorithm(many)
    model.addChildAlgorithm(merge)
    result = processing.run(
        model,
        {
            "scenes": [batch["a"], batch["b"]],
            "merge:OUTPUT_TABLE": str(tmp_path / "merged.csv"),
            "merge:OUTPUT_MOSAIC": str(tmp_path / "mosaic.tif"),
        },
    )
    assert result["CHILD_RESULTS"]["many"]["SCENES_DONE"] == 2
    rows = read_rows(tmp_path / "merged.csv")
    assert [r["status"] for r in rows] == ["done", "done", ""]
    assert read_rows(tmp_path / "t.csv") == rows
    with rasterio.open(tmp_path / "mosaic.tif") as src:
        assert (src.width, src.height) == (96, 64) and (src.read(1) > 0).all()
