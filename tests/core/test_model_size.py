"""MODEL_SIZE, TIME_LIMIT's auto value, the expected-end log line and the built-in baseline
(issue 21). Core, no QGIS; one tiny training shared by the slow tests."""

from __future__ import annotations

import re

import numpy as np
import pytest
import rasterio
from synthetic import make_scene, write_mask

from tests.recorder import Recorder
from wetland_unet_plugin.core.feedback import CoreError, Feedback
from wetland_unet_plugin.core.modelfile import read_metadata
from wetland_unet_plugin.core.schema import TRAIN
from wetland_unet_plugin.core.training import train_model
from wetland_unet_plugin.core.training.baseline import BaselineScorer, pixel_features
from wetland_unet_plugin.core.training.devices import DEVICES_ENV
from wetland_unet_plugin.core.training.sizing import resolve_early_stopping, resolve_sizing

NAMES = "water,wetland,forest"


def _sizing(monkeypatch, devices="", **given):
    """resolve_sizing on the parameters a user left empty, except ``given``."""
    if devices:
        monkeypatch.setenv(DEVICES_ENV, devices)
    else:
        monkeypatch.delenv(DEVICES_ENV, raising=False)
    p = {"model_size": "auto", "patch_size": None, "depth": None, "filters": None}
    p.update(batch_size=None, learning_rate=None, epochs=None)
    p["time_limit"] = -1.0
    p.update(given)
    entry = resolve_sizing(p, None, Feedback())
    return p, entry


def test_model_sizes_set_patch_depth_and_filters(monkeypatch):
    sizes = (("small", (32, 3, 16)), ("medium", (64, 4, 24)), ("large", (160, 5, 32)))
    for size, expected in sizes:
        p, entry = _sizing(monkeypatch, model_size=size)
        assert (p["patch_size"], p["depth"], p["filters"]) == expected
        assert entry["used"] == size and entry["explicit"] == []
    p, entry = _sizing(monkeypatch, model_size="large", patch_size=64, filters=8)
    assert (p["patch_size"], p["depth"], p["filters"]) == (64, 5, 8)
    assert entry["explicit"] == ["PATCH_SIZE", "FILTERS"]


def test_model_sizes_set_batch_learning_rate_and_epochs(monkeypatch):
    """Small: the batch of 16 at LEARNING_RATE 0.002 for 30 epochs measured on the quality
    benchmark (docs/quality.md); medium and large keep 8, 0.001 and 20."""
    sizes = (("small", (16, 0.002, 30)), ("medium", (8, 0.001, 20)), ("large", (8, 0.001, 20)))
    for size, expected in sizes:
        p, _ = _sizing(monkeypatch, model_size=size)
        assert (p["batch_size"], p["learning_rate"], p["epochs"]) == expected
    p, entry = _sizing(monkeypatch, batch_size=4, epochs=3)  # auto = small on this CPU
    assert (p["batch_size"], p["learning_rate"], p["epochs"]) == (4, 0.002, 3)
    assert entry["explicit"] == ["BATCH_SIZE", "EPOCHS"]
    # Fine-tuning keeps the large size's schedule whatever the init model's size.
    p = {"model_size": "auto", "patch_size": None, "depth": 3, "filters": 16, "time_limit": 0.0}
    p.update(batch_size=None, learning_rate=None, epochs=None)
    feedback = Recorder()
    resolve_sizing(p, {"patch_size": 32}, feedback)
    assert (p["patch_size"], p["batch_size"], p["learning_rate"], p["epochs"]) == (32, 8, 0.001, 20)
    assert "BATCH_SIZE 8, LEARNING_RATE 0.001, EPOCHS 20" in feedback.lines[-1]


def test_auto_size_and_time_limit_follow_the_device(monkeypatch):
    p, entry = _sizing(monkeypatch)  # this machine has no GPU
    assert entry["device"] == "CPU" and entry["used"] == "small"
    assert (p["patch_size"], p["depth"], p["filters"], p["time_limit"]) == (32, 3, 16, 15.0)
    p, entry = _sizing(monkeypatch, devices="/gpu:0")
    assert entry["device"] == "GPU" and entry["used"] == "large"
    assert (p["patch_size"], p["depth"], p["filters"], p["time_limit"]) == (160, 5, 32, 0.0)
    for given in (0.0, 2.5):  # 0 = no limit and explicit minutes are kept
        p, entry = _sizing(monkeypatch, time_limit=given)
        assert p["time_limit"] == given and entry["time_limit_asked"] == given
    with pytest.raises(CoreError, match=r"TIME_LIMIT must be -1 \(auto"):
        _sizing(monkeypatch, time_limit=-0.5)


@pytest.mark.parametrize(
    "schedule, asked, used",
    [("cosine", -1, 0), ("plateau", -1, 8), ("cosine", 3, 3), ("plateau", 0, 0)],
)
def test_auto_early_stopping_leaves_the_cosine_schedule_to_end(schedule, asked, used):
    feedback = Recorder()
    p = {"lr_schedule": schedule, "early_stopping_patience": asked}
    assert resolve_early_stopping(p, feedback) == asked
    assert p["early_stopping_patience"] == used
    if asked == -1:
        assert feedback.lines == [
            "Early stopping: off (EARLY_STOPPING auto: the cosine schedule ends training; "
            "the best epoch's weights are kept)."
            if schedule == "cosine"
            else "Early stopping: after 8 epochs without progress (EARLY_STOPPING auto with "
            "the plateau schedule)."
        ]
    else:
        assert feedback.lines == []


def test_schema_model_size_choice_and_empty_architecture():
    param = {p.name: p for p in TRAIN.params}
    assert param["MODEL_SIZE"].default == "auto"
    assert param["MODEL_SIZE"].choices == ("auto", "small", "medium", "large")
    assert param["MODEL_SIZE"].check("Medium") == "medium"
    with pytest.raises(CoreError, match="MODEL_SIZE must be one of auto, small, medium, large"):
        param["MODEL_SIZE"].check("huge")
    for name in ("FILTERS", "DEPTH", "PATCH_SIZE"):
        assert param[name].default is None and param[name].optional
    assert param["TIME_LIMIT"].default == -1.0 and param["BASELINE"].default is True


def test_pixel_features_are_values_and_local_means():
    x = np.arange(2 * 9 * 9 * 2, dtype=np.float32).reshape(2, 9, 9, 2)
    f = pixel_features(x)
    assert f.shape == (2, 9, 9, 6)
    np.testing.assert_array_equal(f[..., :2], x)
    # Interior pixel (4, 4): hand-computed window means.
    np.testing.assert_allclose(f[1, 4, 4, 2:4], x[1, 3:6, 3:6].mean(axis=(0, 1)), rtol=1e-6)
    np.testing.assert_allclose(f[0, 4, 4, 4:6], x[0, 1:8, 1:8].mean(axis=(0, 1)), rtol=1e-6)


def test_baseline_scorer_compares_on_the_same_pixels():
    from sklearn.ensemble import RandomForestClassifier

    # Band 0 separates the classes: low -> 1, high -> 2. Features are values + means.
    x = np.zeros((1, 8, 8, 1), np.float32)
    x[0, :, 4:] = 1.0
    labels = np.ones((1, 8, 8), np.uint8)
    labels[0, :, 4:] = 2
    labels[0, 0, 0] = 0  # unlabelled: left out for both
    forest = RandomForestClassifier(n_estimators=5, random_state=0)
    forest.fit(pixel_features(x)[labels > 0], labels[labels > 0])
    scorer = BaselineScorer(forest, 2)
    unet = np.ones((1, 8, 8), np.int64)  # a "U-Net" that says class 1 everywhere
    scorer.add(x, labels, unet)
    result = scorer.result(63, 0.1)
    assert result["val_pixels"] == 63
    assert result["random_forest"]["overall_accuracy"] == 1.0
    assert result["unet"]["overall_accuracy"] == pytest.approx(31 / 63)
    assert result["better"] == "random_forest"
    assert result["summary"].startswith("The random forest is better than the U-Net")


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory):
    """A training with MODEL_SIZE and TIME_LIMIT left at auto, FILTERS given small for speed."""
    folder = tmp_path_factory.mktemp("auto")
    image = str(folder / "scene.tif")
    class_map = make_scene(image, 128, 128, seed=4)
    mask = write_mask(str(folder / "mask.tif"), class_map, image)
    feedback = Recorder()
    result = train_model(
        [image],
        [mask],
        NAMES,
        str(folder / "model.keras"),
        str(folder / "report.html"),
        filters=4,
        train_size=64,
        val_size=16,
        epochs=2,
        xla=False,
        seed=2,
        feedback=feedback,
    )
    return result, feedback, read_metadata(result["output_model"]), folder


@pytest.mark.slow
def test_auto_size_on_this_cpu_is_recorded_and_logged(auto_run):
    result, feedback, meta, _ = auto_run
    assert (meta["patch_size"], meta["depth"], meta["filters"]) == (32, 3, 4)
    size = meta["model_size"]
    assert (size["asked"], size["used"], size["device"]) == ("auto", "small", "CPU")
    assert size["explicit"] == ["FILTERS", "EPOCHS"] and size["time_limit_asked"] == -1.0
    # The small size's schedule where none was given.
    assert (meta["training"]["batch_size"], meta["training"]["learning_rate"]) == (16, 0.002)
    assert meta["training"]["time_limit_min"] == 15.0
    assert meta["training"]["model_size"] == "auto"
    # EARLY_STOPPING auto under the default cosine schedule: off, and recorded so.
    assert size["early_stopping_asked"] == -1
    assert meta["training"]["early_stopping_patience"] == 0
    assert any(
        line.startswith("Model size small (no GPU visible")
        and "FILTERS 4, BATCH_SIZE 16, LEARNING_RATE 0.002, EPOCHS 2 (FILTERS, EPOCHS as "
        "given); 15 min of fitting (TIME_LIMIT auto on a CPU)"
        in line
        for line in feedback.lines
    )


@pytest.mark.slow
def test_expected_end_is_logged_after_the_first_epoch(auto_run):
    _, feedback, meta, _ = auto_run
    lines = [line for line in feedback.lines if line.startswith("Epoch 1 took")]
    assert len(lines) == 1
    match = re.search(
        r"Epoch 1 took ([\d.]+) s .*EPOCHS 2 need about ([\d.]+) min; TIME_LIMIT 15 min fits "
        r"about (\d+)\. Expected: 2 epoch\(s\), ending at about \d\d:\d\d:\d\d",
        lines[0],
    )
    assert match, lines[0]
    assert "early stopping" not in lines[0]  # off under the cosine schedule (auto)
    first = float(match.group(1))
    assert first == pytest.approx(meta["history"]["epoch_time_s"][0], abs=0.1)
    # The log rounds the epoch's time to 0.1 s; the epochs that fit use the exact time.
    assert int(match.group(3)) == pytest.approx(
        15 * 60 // meta["history"]["epoch_time_s"][0], abs=1
    )
    order = [i for i, line in enumerate(feedback.lines) if line.startswith(("Epoch 1", "Epoch 2"))]
    assert feedback.lines[order[0]].startswith("Epoch 1/2") and len(order) == 3


@pytest.mark.slow
def test_baseline_in_metadata_and_report(auto_run):
    _, feedback, meta, folder = auto_run
    base = meta["baseline"]
    for model in ("unet", "random_forest"):
        scores = base[model]
        for value in [scores["overall_accuracy"], scores["mean_iou"], *scores["iou"]]:
            assert value is not None and 0.0 <= value <= 1.0
        assert int(np.sum(scores["support"])) == base["val_pixels"]
    # Both scored on the same pixels: all validation pixels here (16 patches of 32 px, few
    # unlabelled), so the U-Net's side equals its validation matrix.
    assert base["unet"]["overall_accuracy"] == pytest.approx(
        meta["validation"]["scores"]["overall_accuracy"]
    )
    assert base["better"] in ("unet", "random_forest", "tie")
    assert 0 < base["train_pixels"] <= 3 * 4000 and base["time_s"] > 0  # speed: bench, demo
    report = (folder / "report.html").read_text()
    assert "<h2>Baseline: random forest</h2>" in report
    assert base["summary"] in report.replace("&#x27;", "'")
    assert "<h2>Per-class recall and precision</h2>" in report
    assert any(line.startswith("Baseline (") for line in feedback.lines)


@pytest.mark.slow
def test_defaults_converge_on_an_easily_separable_scene(tmp_path):
    """With only IMAGES, MASKS and CLASS_NAMES (plus a tiny budget and a seed), the auto
    CPU model maps a separate scene at least 95 % right (measured 0.979 with the small
    size's batches of 16 at 0.002, 0.964 with 8 at 0.001; about 25 s)."""
    from wetland_unet_plugin.core.modelfile import load_model
    from wetland_unet_plugin.core.normalize import normalize

    image = str(tmp_path / "train.tif")
    mask = write_mask(str(tmp_path / "mask.tif"), make_scene(image, 160, 160, seed=1), image)
    held_out = str(tmp_path / "eval.tif")
    truth = make_scene(held_out, 96, 96, seed=7)
    result = train_model(
        [image],
        [mask],
        NAMES,
        str(tmp_path / "m.keras"),
        train_size=96,
        val_size=16,
        epochs=6,
        seed=5,
    )
    loaded = load_model(result["output_model"])
    meta = loaded.metadata
    assert meta["model_size"]["used"] == "small"
    with rasterio.open(held_out) as src:
        x = normalize(src.read(meta["bands"]), meta["normalization"])[None]
    prediction = np.argmax(np.asarray(loaded.keras_model(x, training=False))[0], axis=-1) + 1
    accuracy = float((prediction == truth).mean())
    assert accuracy >= 0.95, f"held-out accuracy {accuracy:.3f}"
