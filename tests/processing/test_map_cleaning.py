"""predict's OUTPUT_AREAS / OUTPUT_UNCERTAINTY, wetlandunet:cleanmap and the shipped
map_and_polygons chain, through processing.run as a user's script calls them."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException
from rasterio.transform import from_origin
from scipy import ndimage

from tests.core.test_cleanmap import halves, patches_below_unit, read_polygons
from tests.processing.conftest import COLORS, NAMES
from tests.processing.test_deploy import deployed_home, qgis_process  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("provider")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: Writes a 1x1 model on band 2 (green) of a 4-band reflectance x 10000 scene: class 1
#: ("bright") above 5000, which only the Planet bundle's clouds reach.
GREEN_MODEL = """
import sys
import numpy as np
import keras
from keras import layers
from wetland_unet_plugin.core.modelfile import save_model
inputs = keras.Input((None, None, 1))
conv = layers.Conv2D(2, 1, name="logits")
outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(conv(inputs))
model = keras.Model(inputs, outputs)
conv.set_weights([np.array([[[[8.0, -8.0]]]], np.float32), np.array([-4.0, 4.0], np.float32)])
meta = dict(class_names=["bright", "dark"], class_colors=["#ffffff", "#333333"], n_classes=2,
    bands=[2], n_input_bands=4, normalization={"low": [0.0], "high": [10000.0]},
    patch_size=16, depth=1, activation="softmax", pixel_size=[3, 3], crs="EPSG:32618")
save_model(model, meta, sys.argv[1])
"""


def write_map(path, array, res=10.0):
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
        transform=from_origin(500000, 5800000, res, res),
    ) as dst:
        dst.write(array, 1)
    return str(path)


def test_cleanmap_writes_the_cleaned_map_and_polygons_styled(tmp_path):
    import processing

    src = write_map(tmp_path / "map.tif", halves())
    result = processing.run(
        "wetlandunet:cleanmap",
        {
            "INPUT": src,
            "CLASS_NAMES": NAMES,
            "CLASS_COLORS": COLORS,
            "MMU_HA": 0.05,
            "CONNECTIVITY": "4",
            "OUTPUT": str(tmp_path / "clean.tif"),
            "OUTPUT_POLYGONS": str(tmp_path / "poly.gpkg"),
        },
    )
    expected = halves()
    expected[5:7, 13:15] = 1  # the 4-pixel patch borders class 1 on three sides
    expected[10, 5] = 1
    with rasterio.open(result["OUTPUT"]) as ds:
        assert np.array_equal(ds.read(1), expected)
    assert result["PIXELS_CHANGED"] == 5
    # polygons: water (the left half, B its hole), wetland (D its hole), B (forest), D (water)
    polygons = read_polygons(tmp_path / "poly.gpkg")
    assert result["POLYGONS"] == len(polygons) == 4
    assert sorted(p["class_name"] for p in polygons) == ["forest", "water", "water", "wetland"]
    assert "paletted" in open(result["OUTPUT_STYLE"]).read()
    assert "categorizedSymbol" in open(tmp_path / "poly.qml").read()


def test_cleanmap_refuses_bad_units_before_writing(tmp_path):
    import processing

    src = write_map(tmp_path / "map.tif", halves())
    out = str(tmp_path / "clean.tif")
    for params, message in (
        ({"MMU_HA": 0.001}, "smaller than one pixel"),
        ({"MMU_PER_CLASS": "reed=0.2"}, "reed=0.2"),
        ({"CONNECTIVITY": "6"}, "CONNECTIVITY must be one of 4, 8"),
    ):
        with pytest.raises(QgsProcessingException, match=message):
            processing.run(
                "wetlandunet:cleanmap",
                dict({"INPUT": src, "CLASS_NAMES": NAMES, "OUTPUT": out}, **params),
            )
    assert sorted(os.listdir(tmp_path)) == ["map.tif"]


@pytest.fixture(scope="module")
def predicted(trained, scenes, tmp_path_factory):
    """The test scene predicted with probabilities, uncertainty and areas."""
    import processing

    folder = tmp_path_factory.mktemp("predicted")
    result = processing.run(
        "wetlandunet:predict",
        {
            "MODEL": trained["OUTPUT_MODEL"],
            "INPUT": scenes["test"],
            "TTA": 2,
            "PROBABILITY_TYPE": "float32",
            "OUTPUT": str(folder / "map.tif"),
            "OUTPUT_PROBABILITIES": str(folder / "p.tif"),
            "OUTPUT_UNCERTAINTY": str(folder / "u.tif"),
            "OUTPUT_AREAS": str(folder / "areas.csv"),
        },
    )
    return result


@pytest.mark.slow
def test_predict_areas_are_pixel_counts_times_pixel_area(predicted):
    with rasterio.open(predicted["OUTPUT"]) as ds:
        classes = ds.read(1)
        t = ds.transform
    pixel_m2 = abs(t.a * t.e)  # UTM metres
    with open(predicted["OUTPUT_AREAS"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["class_name"] for r in rows] == NAMES.split(",") + ["total"]
    for k, row in enumerate(rows[:-1], start=1):
        assert int(row["pixels"]) == int(np.sum(classes == k))
        assert float(row["hectares"]) == pytest.approx(np.sum(classes == k) * pixel_m2 / 1e4)
    assert int(rows[-1]["pixels"]) == int(np.sum(classes > 0))


@pytest.mark.slow
def test_predict_uncertainty_is_normalised_entropy_styled_as_a_ramp(predicted):
    with rasterio.open(predicted["OUTPUT_PROBABILITIES"]) as ds:
        probs = ds.read().astype(np.float64)
    with rasterio.open(predicted["OUTPUT_UNCERTAINTY"]) as ds:
        assert ds.descriptions == ("uncertainty", "tta_disagreement")  # TTA 2
        u, disagreement = ds.read()
    q = np.clip(probs, 1e-12, 1)
    q = q / q.sum(axis=0)
    entropy = -(q * np.log(q)).sum(axis=0) / np.log(3)
    np.testing.assert_allclose(u, entropy, atol=1e-4)
    assert 0 <= u.min() and u.max() <= 1
    # second band: share of the 2 transforms disagreeing (blended across tiles), and none
    # where the averaged prediction is nearly certain (each transform then has p > 0.98)
    assert 0 <= disagreement.min() and disagreement.max() <= 1
    assert np.all(disagreement[u < 0.05] == 0)
    qml = os.path.splitext(predicted["OUTPUT_UNCERTAINTY"])[0] + ".qml"
    assert "singlebandpseudocolor" in open(qml).read()


@pytest.mark.slow
def test_cleanmap_on_a_prediction_leaves_no_patch_under_the_unit(predicted, trained, tmp_path):
    import processing

    with rasterio.open(predicted["OUTPUT"]) as ds:
        pixel_m2 = abs(ds.transform.a * ds.transform.e)
    mmu_ha = 12 * pixel_m2 / 1e4  # 12 pixels
    result = processing.run(
        "wetlandunet:cleanmap",
        {
            "INPUT": predicted["OUTPUT"],
            "MODEL": trained["OUTPUT_MODEL"],
            "MMU_HA": mmu_ha,
            "PROBABILITIES": predicted["OUTPUT_PROBABILITIES"],
            "UNCERTAINTY": predicted["OUTPUT_UNCERTAINTY"],
            "OUTPUT": str(tmp_path / "clean.tif"),
            "OUTPUT_POLYGONS": str(tmp_path / "poly.gpkg"),
        },
    )
    with rasterio.open(result["OUTPUT"]) as ds:
        cleaned = ds.read(1)
    assert patches_below_unit(cleaned, {1: 12, 2: 12, 3: 12}, 8) == []
    polygons = read_polygons(tmp_path / "poly.gpkg")
    for k in (1, 2, 3):
        map_m2 = np.sum(cleaned == k) * pixel_m2
        poly_m2 = sum(p["ring_area_m2"] for p in polygons if p["class_id"] == k)
        assert poly_m2 == pytest.approx(map_m2, rel=0.005)
    assert all(0 < p["mean_probability"] <= 1 for p in polygons)
    assert all(0 <= p["mean_uncertainty"] <= 1 for p in polygons)
    with pytest.raises(QgsProcessingException, match="does not match the model's classes"):
        processing.run(
            "wetlandunet:cleanmap",
            {
                "INPUT": predicted["OUTPUT"],
                "MODEL": trained["OUTPUT_MODEL"],
                "CLASS_NAMES": "water,reed,forest",
                "OUTPUT": str(tmp_path / "other.tif"),
            },
        )
    assert not os.path.exists(tmp_path / "other.tif")


@pytest.mark.slow
def test_shipped_chain_maps_a_scene_to_cleaned_polygons_without_labels(trained, scenes, tmp_path):
    import processing

    result = processing.run(
        "wetlandunet:map_and_polygons",
        {
            "scene": scenes["test"],
            "model": trained["OUTPUT_MODEL"],
            "mmu_ha": 0.01,
            "predict:Land-cover map": str(tmp_path / "map.tif"),
            "clean:Cleaned land-cover map": str(tmp_path / "clean.tif"),
            "clean:Land-cover polygons": str(tmp_path / "poly.gpkg"),
        },
    )
    with rasterio.open(result["clean:Cleaned land-cover map"]) as ds:
        cleaned = ds.read(1)
        pixel_m2 = abs(ds.transform.a * ds.transform.e)
    unit = int(np.ceil(0.01 * 1e4 / pixel_m2))
    assert patches_below_unit(cleaned, {1: unit, 2: unit, 3: unit}, 8) == []
    polygons = read_polygons(tmp_path / "poly.gpkg")
    assert sum(p["ring_area_m2"] for p in polygons) == pytest.approx(
        np.sum(cleaned > 0) * pixel_m2, rel=0.005
    )
    assert all(p["mean_uncertainty"] is not None for p in polygons)
    assert (cleaned == scenes["truth"]).mean() > 0.8
    assert ndimage.label(cleaned > 0)[1] >= 1


@pytest.mark.slow
def test_qgis_process_runs_cleanmap_and_lists_the_chain(deployed_home, tmp_path):  # noqa: F811
    """Headless, as on a server: the deployed plugin's cleanmap through qgis_process."""
    src = write_map(tmp_path / "map.tif", halves())
    listing = qgis_process(deployed_home, "list")
    assert "wetlandunet:cleanmap" in listing.stdout
    assert "wetlandunet:map_and_polygons" in listing.stdout
    result = qgis_process(
        deployed_home,
        "run",
        "wetlandunet:cleanmap",
        "--",
        f"INPUT={src}",
        f"CLASS_NAMES={NAMES}",
        "MMU_HA=0.05",
        "MMU_PER_CLASS=water=0.1",
        "CONNECTIVITY=4",
        f"OUTPUT={tmp_path / 'clean.tif'}",
        f"OUTPUT_POLYGONS={tmp_path / 'poly.gpkg'}",
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    expected = halves()
    expected[5:7, 13:15] = 1  # c3 patch of 4 px into water (longest border)
    expected[10, 5] = 1  # 1 px of wetland
    expected[25:27, 20:23] = 2  # 6 px of water, below water's 10 px
    with rasterio.open(tmp_path / "clean.tif") as ds:
        assert np.array_equal(ds.read(1), expected)
    assert len(read_polygons(tmp_path / "poly.gpkg")) == 3


@pytest.mark.slow
def test_planet_chain_prepares_predicts_cleans_and_polygonizes(provider, tmp_path):
    """map_planet_scene on a Planet delivery: the UDM2's cloud, shadow and blackfill are
    nodata in the cleaned map and outside every polygon; the rest is classified."""
    import processing

    from tests.planet_bundle import write_bundle

    folder = tmp_path
    # tests/core/test_many_predict.py's hand-set green-band threshold model, built in a
    # separate process: TensorFlow must not load into the QGIS test process
    green_model = str(folder / "green.keras")
    subprocess.run([sys.executable, "-c", GREEN_MODEL, green_model], check=True, cwd=ROOT)
    bundle = write_bundle(folder / "delivery")
    result = processing.run(
        "wetlandunet:map_planet_scene",
        {
            "scene": bundle["scene"],
            "model": green_model,
            "mmu_ha": 0.01,
            "predict:Land-cover map": str(folder / "map.tif"),
            "clean:Cleaned land-cover map": str(folder / "clean.tif"),
            "clean:Land-cover polygons": str(folder / "poly.gpkg"),
        },
    )
    masked = bundle["cloud"] | bundle["shadow"] | bundle["blackfill"]
    with rasterio.open(result["clean:Cleaned land-cover map"]) as ds:
        cleaned = ds.read(1)
        pixel_m2 = abs(ds.transform.a * ds.transform.e)
    np.testing.assert_array_equal(cleaned == 0, masked)
    unit = int(np.ceil(0.01 * 1e4 / pixel_m2))
    assert patches_below_unit(cleaned, {1: unit, 2: unit}, 8) == []
    polygons = read_polygons(folder / "poly.gpkg")
    assert sum(p["ring_area_m2"] for p in polygons) == pytest.approx(
        np.sum(~masked) * pixel_m2, rel=0.005
    )


def test_cleanmap_outputs_load_styled_by_class(tmp_path):
    """Loaded into the project (as the Toolbox does), the map is paletted and the polygons
    are categorized by class id, in the class colours."""
    import processing
    from qgis.core import QgsProject

    src = write_map(tmp_path / "map.tif", halves())
    result = processing.runAndLoadResults(
        "wetlandunet:cleanmap",
        {
            "INPUT": src,
            "CLASS_NAMES": NAMES,
            "CLASS_COLORS": COLORS,
            "MMU_HA": 0.05,
            "OUTPUT": str(tmp_path / "clean.tif"),
            "OUTPUT_POLYGONS": str(tmp_path / "poly.gpkg"),
        },
    )
    project = QgsProject.instance()
    try:
        layers = {layer.source().split("|")[0]: layer for layer in project.mapLayers().values()}
        raster = layers[result["OUTPUT"]]
        polygons = layers[result["OUTPUT_POLYGONS"]]
        assert raster.renderer().type() == "paletted"
        assert [c.label for c in raster.renderer().classes()] == NAMES.split(",")
        renderer = polygons.renderer()
        assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "class_id"
        colors = [c.symbol().color().name() for c in renderer.categories()]
        assert colors == COLORS.split(",")
    finally:
        project.removeAllMapLayers()


@pytest.mark.slow
def test_uncertainty_loads_with_a_sequential_ramp(trained, scenes, tmp_path):
    import processing
    from qgis.core import QgsProject

    result = processing.runAndLoadResults(
        "wetlandunet:predict",
        {
            "MODEL": trained["OUTPUT_MODEL"],
            "INPUT": scenes["test"],
            "OUTPUT": str(tmp_path / "map.tif"),
            "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif"),
        },
    )
    project = QgsProject.instance()
    try:
        layers = {layer.source(): layer for layer in project.mapLayers().values()}
        renderer = layers[result["OUTPUT_UNCERTAINTY"]].renderer()
        assert renderer.type() == "singlebandpseudocolor"
        assert (renderer.classificationMin(), renderer.classificationMax()) == (0.0, 1.0)
        assert layers[result["OUTPUT"]].renderer().type() == "paletted"
    finally:
        project.removeAllMapLayers()
