"""predict_many with a hand-set 1x1 model (class 1 where the band is above 0.5, else class
2), so every map, hectare and failure is known before the run: a scene without valid
pixels and one with too few bands fail without stopping the batch, and a cancel keeps the
finished scenes and leaves nothing of the one in progress."""

import csv
import os

import numpy as np
import pytest
import rasterio

from tests.rasters import write_raster
from wetland_unet_plugin.core.feedback import Canceled, Feedback
from wetland_unet_plugin.core.inference.many import predict_many
from wetland_unet_plugin.core.modelfile import save_model

pytestmark = pytest.mark.slow  # imports TensorFlow

CRS = "EPSG:32618"
PIXEL_HA = 10 * 10 / 10_000


@pytest.fixture(scope="module")
def threshold_model(tmp_path_factory):
    """Softmax of a 1x1 convolution: p(class 1) = sigmoid(16 (x - 0.5)) on band 2."""
    import keras
    from keras import layers

    inputs = keras.Input((None, None, 1))
    conv = layers.Conv2D(2, 1, name="logits")
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(conv(inputs))
    model = keras.Model(inputs, outputs)
    conv.set_weights([np.array([[[[8.0, -8.0]]]], np.float32), np.array([-4.0, 4.0], np.float32)])
    meta = {
        "class_names": ["water", "land"],
        "class_colors": ["#1f78b4", "#a6d96a"],
        "n_classes": 2,
        "bands": [2],
        "n_input_bands": 2,
        "normalization": {"low": [0.0], "high": [1.0]},
        "patch_size": 16,
        "depth": 1,
        "activation": "softmax",
        "pixel_size": [10, 10],
        "crs": CRS,
    }
    path = str(tmp_path_factory.mktemp("model") / "threshold.keras")
    save_model(model, meta, path)
    return path


def scene(path, band2, nodata=None, bands=2):
    """A scene whose band 2 is ``band2`` (band 1 is noise the model does not read)."""
    data = np.stack([np.full(band2.shape, 0.9, np.float32), band2.astype(np.float32)])[:bands]
    return write_raster(str(path), data, CRS, nodata=nodata)


def test_failures_do_not_stop_the_batch_and_hectares_are_exact(tmp_path, threshold_model):
    values = np.array([[0.9, 0.8, 0.1, 0.2], [0.7, 0.3, 0.0, 0.6], [-1, -1, 0.9, 0.1]])
    good = scene(tmp_path / "good.tif", values, nodata=-1)  # 2 pixels nodata
    empty = scene(tmp_path / "empty.tif", np.full((3, 4), -1.0), nodata=-1)
    thin = scene(tmp_path / "thin.tif", values, bands=1)
    result = predict_many(
        inputs=[empty, good, thin], model=threshold_model, output_folder=str(tmp_path / "out")
    )
    assert (result["scenes_done"], result["scenes_failed"]) == (1, 2)
    assert sorted(os.listdir(tmp_path / "out")) == ["good_classes.tif", "scenes.csv"]
    with rasterio.open(tmp_path / "out" / "good_classes.tif") as src:
        expected = np.array([[1, 1, 2, 2], [1, 2, 2, 1], [0, 0, 1, 2]])
        np.testing.assert_array_equal(src.read(1), expected)
    with open(tmp_path / "out" / "scenes.csv", newline="") as f:
        rows = {os.path.basename(r["scene"]): r for r in csv.DictReader(f)}
    assert rows["empty.tif"]["status"] == "failed"
    assert "no valid pixel" in rows["empty.tif"]["message"]
    assert rows["thin.tif"]["status"] == "failed" and "band" in rows["thin.tif"]["message"]
    row = rows["good.tif"]
    assert float(row["water_ha"]) == pytest.approx(5 * PIXEL_HA)
    assert float(row["land_ha"]) == pytest.approx(5 * PIXEL_HA)
    assert float(row["valid_ha"]) == pytest.approx(10 * PIXEL_HA)
    assert float(row["masked_ha"]) == pytest.approx(2 * PIXEL_HA)
    assert float(rows["TOTAL"]["water_ha"]) == pytest.approx(5 * PIXEL_HA)


class CancelInScene(Feedback):
    """Cancels after a few progress reports (tiles) of scene ``n``, while its map is open."""

    def __init__(self, n):
        self.n = n
        self.started = False
        self.reports = 0

    def info(self, text):
        self.started = self.started or text.startswith(f"Scene {self.n}/")
        if self.started and text.startswith("Predicting"):
            self.reports = 0

    def progress(self, fraction):
        self.reports += self.started

    def is_canceled(self):
        return self.started and self.reports >= 3


def test_cancel_keeps_finished_scenes_and_removes_the_one_in_progress(tmp_path, threshold_model):
    values = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    scenes = [scene(tmp_path / f"s{k}.tif", values) for k in range(3)]
    out = tmp_path / "out"
    feedback = CancelInScene(2)
    with pytest.raises(Canceled):
        predict_many(
            inputs=scenes,
            model=threshold_model,
            output_folder=str(out),
            tile_size=16,
            overlap=4,
            feedback=feedback,
        )
    assert feedback.reports >= 3  # canceled inside scene 2, after some of its tiles
    assert sorted(os.listdir(out)) == ["s0_classes.tif"]  # no partial file, no table


@pytest.fixture(scope="module")
def green_model(tmp_path_factory):
    """The threshold model on band 2 (green) of a 4-band scene in reflectance x 10000:
    class 1 (bright) above 5000, which only the bundle's clouds (8000) reach."""
    import keras
    from keras import layers

    inputs = keras.Input((None, None, 1))
    conv = layers.Conv2D(2, 1, name="logits")
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(conv(inputs))
    model = keras.Model(inputs, outputs)
    conv.set_weights([np.array([[[[8.0, -8.0]]]], np.float32), np.array([-4.0, 4.0], np.float32)])
    meta = {
        "class_names": ["bright", "dark"],
        "class_colors": ["#ffffff", "#333333"],
        "n_classes": 2,
        "bands": [2],
        "n_input_bands": 4,
        "normalization": {"low": [0.0], "high": [10000.0]},
        "patch_size": 16,
        "depth": 1,
        "activation": "softmax",
        "pixel_size": [3, 3],
        "crs": CRS,
    }
    path = str(tmp_path_factory.mktemp("model") / "green.keras")
    save_model(model, meta, path)
    return path


def test_prepare_masks_the_planet_udm2_and_counts_it_as_masked(tmp_path, green_model):
    from tests.planet_bundle import ACQUIRED, ITEM, write_bundle

    bundle = write_bundle(tmp_path / "delivery")
    masked = bundle["cloud"] | bundle["shadow"] | bundle["blackfill"]  # default MASK_CLASSES
    area = 3.0 * 3.0 / 10_000
    tables = {}
    for prepare in (True, False):
        out = tmp_path / f"prepare_{prepare}"
        result = predict_many(
            inputs=[bundle["scene"]], model=green_model, output_folder=str(out), prepare=prepare
        )
        assert result["scenes_done"] == 1
        with rasterio.open(out / f"{ITEM}_classes.tif") as src:
            classes = src.read(1)
        with open(out / "scenes.csv", newline="") as f:
            tables[prepare] = row = next(csv.DictReader(f))
        assert sorted(os.listdir(out)) == [f"{ITEM}_classes.tif", "scenes.csv"]
        assert row["item_id"] == ITEM and row["acquired"] == ACQUIRED
        if prepare:
            np.testing.assert_array_equal(classes == 0, masked)
            assert not (classes == 1).any()  # the clouds are gone
            assert float(row["masked_ha"]) == pytest.approx(masked.sum() * area)
        else:
            np.testing.assert_array_equal(classes == 0, bundle["blackfill"])
            np.testing.assert_array_equal(classes == 1, bundle["cloud"] & ~bundle["blackfill"])
    assert float(tables[True]["valid_ha"]) < float(tables[False]["valid_ha"])
