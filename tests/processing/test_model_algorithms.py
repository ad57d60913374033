"""train, predict, evaluate and styleclassified through processing.run.

train and predict run in the worker process for real (TensorFlow never enters
this process's QGIS); a tiny model is trained once per session and reused.
"""

import os

import numpy as np
import pytest
import rasterio
from qgis.core import (
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
    QgsRasterLayer,
)

from tests.core.synthetic import make_scene
from tests.processing.conftest import COLORS, NAMES, TINY
from wetland_unet_plugin.core.modelfile import read_metadata

pytestmark = pytest.mark.usefixtures("provider")


def test_train_writes_a_self_describing_model_and_a_report(trained):
    """The model file carries names, colours, bands and normalisation; the report has plots."""
    assert os.path.isfile(trained["OUTPUT_MODEL"])
    meta = read_metadata(trained["OUTPUT_MODEL"])
    assert meta["class_names"] == NAMES.split(",")
    assert meta["class_colors"] == COLORS.split(",")
    assert meta["bands"] == [1, 2, 3, 4]
    assert len(meta["normalization"]["low"]) == 4
    assert meta["patch_size"] == 32 and meta["depth"] == 2
    assert meta["training"]["xla"] is True  # the default, in the worker
    assert meta["spectral_skip"] is True  # the default, in the worker
    assert trained["EPOCHS_RUN"] >= 1 and trained["CANCELED"] is False
    assert trained["VAL_ACCURACY"] > 0.6
    html = open(trained["OUTPUT_REPORT"], encoding="utf-8").read()
    assert html.count("data:image/png;base64,") >= 2  # curves and confusion matrix


def test_train_passes_validation_split_schedule_jitter_and_dropout(scenes, tmp_path):
    """The advanced VAL_SPLIT, LR_SCHEDULE, JITTER, DROPOUT, TIME_LIMIT, BALANCE_CLASSES,
    XLA and SPECTRAL_SKIP reach the core."""
    import processing
    from qgis.core import QgsApplication, QgsProcessingParameterDefinition

    alg = QgsApplication.processingRegistry().algorithmById("wetlandunet:train")
    for name in (
        "VAL_SPLIT",
        "LR_SCHEDULE",
        "JITTER",
        "DROPOUT",
        "TIME_LIMIT",
        "BALANCE_CLASSES",
        "XLA",
        "SPECTRAL_SKIP",
    ):
        definition = alg.parameterDefinition(name)
        assert definition is not None, name
        assert definition.flags() & QgsProcessingParameterDefinition.FlagAdvanced, name
    assert alg.parameterDefinition("VAL_SPLIT").defaultValue() == "rows"
    assert alg.parameterDefinition("LR_SCHEDULE").defaultValue() == "cosine"
    assert alg.parameterDefinition("JITTER").defaultValue() == 0.0
    assert alg.parameterDefinition("DROPOUT").defaultValue() == 0.1
    assert alg.parameterDefinition("TIME_LIMIT").defaultValue() == -1.0
    assert alg.parameterDefinition("BALANCE_CLASSES").defaultValue() == "auto"
    assert alg.parameterDefinition("XLA").defaultValue() is True
    assert alg.parameterDefinition("SPECTRAL_SKIP").defaultValue() is True
    result = processing.run(
        "wetlandunet:train",
        dict(
            TINY,
            EPOCHS=2,
            IMAGES=[p[0] for p in scenes["pairs"]],
            MASKS=[p[1] for p in scenes["pairs"]],
            CLASS_NAMES=NAMES,
            VAL_SPLIT="images",
            LR_SCHEDULE="plateau",
            JITTER=0.05,
            DROPOUT=0.0,
            TIME_LIMIT=5,
            BALANCE_CLASSES=False,
            XLA=False,
            SPECTRAL_SKIP=False,
            OUTPUT_MODEL=str(tmp_path / "m.keras"),
        ),
    )
    meta = read_metadata(result["OUTPUT_MODEL"])
    assert meta["training"]["val_split"] == "images"
    assert meta["training"]["lr_schedule"] == "plateau"
    assert meta["training"]["jitter"] == 0.05 and meta["dropout"] == 0.0
    assert meta["training"]["time_limit_min"] == 5
    # the checkbox's False of earlier versions is BALANCE_CLASSES off
    assert meta["training"]["balance_classes"] == "off"
    assert meta["training"]["balance_classes_used"] is False
    assert meta["patch_sampling"]["balanced"] is False
    assert meta["training"]["xla"] is False
    assert meta["spectral_skip"] is False
    assert [i["split"] for i in meta["data"]["images"]] == ["training image", "validation image"]


def test_predict_maps_an_unseen_scene_and_loads_it_styled(trained, scenes, tmp_path):
    """Predict as the dialog does: output loaded, palette applied by the post-processor."""
    import processing

    output = str(tmp_path / "landcover.tif")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    result = processing.run(
        "wetlandunet:predict",
        {
            "MODEL": trained["OUTPUT_MODEL"],
            "INPUT": scenes["test"],
            "TTA": 2,
            "OUTPUT": QgsProcessingOutputLayerDefinition(output, QgsProject.instance()),
            "OUTPUT_MAP": str(tmp_path / "map.tif"),
        },
        context=context,
        feedback=feedback,
    )
    assert result["OUTPUT"] == output
    with rasterio.open(output) as out, rasterio.open(scenes["test"]) as src:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        assert out.dtypes[0] == "uint8" and out.nodata == 0
        classes = out.read(1)
    accuracy = (classes == scenes["truth"]).mean()
    assert accuracy > 0.8, f"unseen-scene accuracy {accuracy:.3f}"
    assert os.path.isfile(result["OUTPUT_STYLE"])
    with rasterio.open(str(tmp_path / "map.tif")) as rgba:
        assert rgba.count == 4

    # The layer QGIS loads on completion gets the paletted renderer from the model.
    assert context.willLoadLayerOnCompletion(output)
    details = context.layerToLoadOnCompletionDetails(output)
    layer = QgsRasterLayer(output, "landcover", "gdal")
    details.postProcessor().postProcessLayer(layer, context, feedback)
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    entries = [(c.value, c.label, c.color.name()) for c in renderer.classes()]
    assert entries == [(1, "water", "#0000ff"), (2, "wetland", "#00ffff"), (3, "forest", "#008000")]


def test_batch_of_scenes_reuses_the_worker(trained, scenes, tmp_path):
    """Several scenes in a row: one worker process, no restart between scenes."""
    import processing

    from wetland_unet_plugin.processing.settings import worker_python
    from wetland_unet_plugin.processing.worker_client import get_client

    client = get_client(worker_python())
    processing.run(
        "wetlandunet:predict",
        {
            "MODEL": trained["OUTPUT_MODEL"],
            "INPUT": scenes["test"],
            "OUTPUT": str(tmp_path / "a.tif"),
        },
    )
    pid, starts = client.pid, client.starts
    for name in ("b.tif", "c.tif"):
        processing.run(
            "wetlandunet:predict",
            {
                "MODEL": trained["OUTPUT_MODEL"],
                "INPUT": scenes["test"],
                "OUTPUT": str(tmp_path / name),
            },
        )
    assert client.pid == pid and client.starts == starts
    a = rasterio.open(str(tmp_path / "a.tif")).read(1)
    np.testing.assert_array_equal(a, rasterio.open(str(tmp_path / "c.tif")).read(1))


def test_predict_rejects_a_scene_with_too_few_bands(trained, tmp_path):
    """A 2-band scene for a 4-band model: clear error, nothing written."""
    import processing

    scene = str(tmp_path / "two_bands.tif")
    make_scene(scene, 64, 64, n_bands=2, seed=4)
    output = str(tmp_path / "never.tif")
    with pytest.raises(QgsProcessingException, match="(?i)band"):
        processing.run(
            "wetlandunet:predict",
            {"MODEL": trained["OUTPUT_MODEL"], "INPUT": scene, "OUTPUT": output},
        )
    assert not os.path.exists(output)


def test_predict_rejects_a_file_that_is_not_a_model(scenes, tmp_path):
    """A corrupt model file is refused before the worker is asked."""
    import processing

    bogus = tmp_path / "broken.keras"
    bogus.write_bytes(b"PK\x03\x04 this is not a zip")
    output = str(tmp_path / "never.tif")
    with pytest.raises(QgsProcessingException, match="(?i)model"):
        processing.run(
            "wetlandunet:predict", {"MODEL": str(bogus), "INPUT": scenes["test"], "OUTPUT": output}
        )
    assert not os.path.exists(output)


def test_train_rejects_image_mask_count_mismatch(scenes, tmp_path):
    """Two images and one mask: clear error before training, no model file."""
    import processing

    model = str(tmp_path / "m.keras")
    with pytest.raises(QgsProcessingException, match="(?i)mask"):
        processing.run(
            "wetlandunet:train",
            dict(
                TINY,
                IMAGES=[p[0] for p in scenes["pairs"]],
                MASKS=[scenes["pairs"][0][1]],
                CLASS_NAMES=NAMES,
                OUTPUT_MODEL=model,
            ),
        )
    assert not os.path.exists(model)


def test_train_rejects_mask_classes_beyond_the_names(scenes, tmp_path):
    """Mask ids 1..3 with two class names: the message says which values and what to do."""
    import processing

    model = str(tmp_path / "m.keras")
    with pytest.raises(QgsProcessingException, match="CLASS_NAMES"):
        processing.run(
            "wetlandunet:train",
            dict(
                TINY,
                IMAGES=[scenes["pairs"][0][0]],
                MASKS=[scenes["pairs"][0][1]],
                CLASS_NAMES="water,wetland",
                OUTPUT_MODEL=model,
            ),
        )
    assert not os.path.exists(model)


def test_evaluate_known_confusion_matrix(tmp_path):
    """OA, kappa and mean IoU against values computed by hand from a 2-class matrix."""
    import processing

    # reference/prediction pairs: (1,1) x40, (1,2) x10, (2,1) x5, (2,2) x45, plus 20 unlabelled.
    pairs = [(1, 1)] * 40 + [(1, 2)] * 10 + [(2, 1)] * 5 + [(2, 2)] * 45 + [(0, 1)] * 20
    ref = np.array([p[0] for p in pairs], dtype="uint8").reshape(10, 12)
    pred = np.array([p[1] for p in pairs], dtype="uint8").reshape(10, 12)
    from tests.rasters import write_raster

    ref_path = write_raster(tmp_path / "ref.tif", ref, nodata=0)
    pred_path = write_raster(tmp_path / "pred.tif", pred, nodata=0)
    result = processing.run(
        "wetlandunet:evaluate",
        {
            "PREDICTION": pred_path,
            "REFERENCE": ref_path,
            "CLASS_NAMES": "water,forest",
            "OUTPUT_HTML": str(tmp_path / "eval.html"),
            "OUTPUT_TABLE": str(tmp_path / "cm.csv"),
        },
    )
    oa = 85 / 100
    pe = (50 * 45 + 50 * 55) / 100**2
    assert result["OVERALL_ACCURACY"] == pytest.approx(oa)
    assert result["KAPPA"] == pytest.approx((oa - pe) / (1 - pe))
    assert result["MEAN_IOU"] == pytest.approx((40 / 55 + 45 / 60) / 2)
    table = open(tmp_path / "cm.csv", encoding="utf-8").read()
    assert "water" in table and "forest" in table
    assert "data:image/png;base64," in open(tmp_path / "eval.html", encoding="utf-8").read()


def test_styleclassified_from_names_and_colours(tmp_path):
    """A .qml with a paletted renderer that QGIS reads back with the same entries."""
    import processing

    from tests.rasters import write_raster

    raster = write_raster(tmp_path / "classes.tif", np.array([[1, 2], [2, 1]], "uint8"), nodata=0)
    result = processing.run(
        "wetlandunet:styleclassified",
        {"INPUT": raster, "CLASS_NAMES": "open water,marsh", "CLASS_COLORS": "#112233,#445566"},
    )
    assert result["OUTPUT_STYLE"] == str(tmp_path / "classes.qml")
    layer = QgsRasterLayer(raster, "c", "gdal")
    layer.loadNamedStyle(result["OUTPUT_STYLE"])
    classes = [(c.value, c.label, c.color.name()) for c in layer.renderer().classes()]
    assert classes == [(1, "open water", "#112233"), (2, "marsh", "#445566")]


def test_styleclassified_rejects_bad_colours(tmp_path):
    """CLASS_COLORS that are not #rrggbb: the message shows the expected form."""
    import processing

    from tests.rasters import write_raster

    raster = write_raster(tmp_path / "classes.tif", np.array([[1, 2]], "uint8"), nodata=0)
    with pytest.raises(QgsProcessingException, match="#rrggbb"):
        processing.run(
            "wetlandunet:styleclassified",
            {"INPUT": raster, "CLASS_NAMES": "a,b", "CLASS_COLORS": "blue,#zzzzzz"},
        )
    assert not os.path.exists(tmp_path / "classes.qml")


@pytest.mark.slow
def test_can_execute_says_what_to_run_when_tensorflow_is_missing():
    """A worker Python without TensorFlow (Debian's own python3): train/predict say so in
    words and name the fix; the preparation algorithms still work."""
    from processing.core.ProcessingConfig import ProcessingConfig
    from qgis.core import QgsApplication

    from wetland_unet_plugin.processing.settings import WORKER_PYTHON_SETTING

    registry = QgsApplication.processingRegistry()
    previous = ProcessingConfig.getSetting(WORKER_PYTHON_SETTING)
    ProcessingConfig.setSettingValue(WORKER_PYTHON_SETTING, "/usr/bin/python3")
    try:
        for alg_id in ("wetlandunet:train", "wetlandunet:predict"):
            ok, message = registry.algorithmById(alg_id).canExecute()
            assert not ok
            assert "make setup" in message and "'/usr/bin/python3'" in message
            assert "tensorflow" in message
        ok, _ = registry.algorithmById("wetlandunet:cleaninvalid").canExecute()
        assert ok
    finally:
        ProcessingConfig.setSettingValue(WORKER_PYTHON_SETTING, previous)
    ok, message = registry.algorithmById("wetlandunet:predict").canExecute()
    assert ok, message
    assert "TensorFlow 2." in message
