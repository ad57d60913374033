"""Tests of training (core, no QGIS): tiny U-Nets on synthetic scenes, a few seconds each."""

from __future__ import annotations

import functools
import glob
import html
import json
import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from synthetic import DEFAULT_TRANSFORM, make_scene, write_mask, write_onehot_mask

from tests.rasters import write_raster
from tests.recorder import Recorder
from wetland_unet_plugin.core import dihedral
from wetland_unet_plugin.core.feedback import Canceled, CoreError
from wetland_unet_plugin.core.modelfile import load_model, read_metadata
from wetland_unet_plugin.core.normalize import normalize
from wetland_unet_plugin.core.training import patches, train_model
from wetland_unet_plugin.core.training.dataset import make_dataset
from wetland_unet_plugin.core.training.masks import MaskScan, mask_labels, scan_mask
from wetland_unet_plugin.core.training.pairs import (
    PairInfo,
    check_pairs,
    split_images,
    split_regions,
    validation_image_indices,
)
from wetland_unet_plugin.core.training.patches import (
    TRAIN_STREAM,
    VAL_STREAM,
    PatchSampler,
    build_sources,
    describe_balance,
    radiometric_jitter,
    resolve_balance,
)
from wetland_unet_plugin.core.training.schedule import cosine_rate, schedule_progress
from wetland_unet_plugin.core.training.statistics import sample_normalization
from wetland_unet_plugin.core.training.weights import auto_class_weights, choose_class_weights

NAMES = "water,wetland,forest"
#: A tiny, fast configuration (about 1 s per epoch on 2 cores after tracing). XLA is off:
#: its compilation (about 10 s) outweighs a tiny model's whole training; the shared
#: ``trained`` model and the seed test train with it, as the default does.
TINY = dict(
    patch_size=32,
    batch_size=8,
    train_size=160,
    val_size=32,
    epochs=3,
    filters=8,
    depth=2,
    learning_rate=3e-3,
    xla=False,
)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """A training scene (160 px), a separate evaluation scene (96 px), masks."""
    folder = tmp_path_factory.mktemp("scenes")
    paths = {"folder": folder}
    for name, size, seed in (("train", 160, 1), ("eval", 96, 7)):
        image = str(folder / f"{name}.tif")
        class_map = make_scene(image, size, size, seed=seed)
        paths[name] = image
        paths[name + "_mask"] = write_mask(str(folder / f"{name}_mask.tif"), class_map, image)
        paths[name + "_map"] = class_map
    return paths


@pytest.fixture(scope="module")
def trained(scenes):
    """One tiny training with a report and a CSV log, shared by several tests."""
    folder = scenes["folder"]
    feedback = Recorder()
    result = train_model(
        [scenes["train"]],
        [scenes["train_mask"]],
        NAMES,
        str(folder / "model.keras"),
        str(folder / "report.html"),
        seed=3,
        csv_log=str(folder / "log.csv"),
        feedback=feedback,
        **dict(TINY, xla=True),
    )
    return result, feedback


def _accuracy_on(model_path: str, image: str, class_map: np.ndarray) -> float:
    loaded = load_model(model_path)
    meta = loaded.metadata
    with rasterio.open(image) as src:
        block = src.read(meta["bands"])
    x = normalize(block, meta["normalization"])[None]
    probabilities = np.asarray(loaded.keras_model(x, training=False))[0]
    prediction = np.argmax(probabilities, axis=-1) + 1
    return float((prediction == class_map).mean())


def _no_outputs(folder, *paths) -> None:
    for path in paths:
        assert not os.path.exists(path), f"{path} was left behind"
    assert not glob.glob(os.path.join(str(folder), ".*partial*")), "partial file left behind"


# --- training -------------------------------------------------------------------------------


def test_model_learns_and_generalises_to_a_separate_scene(scenes, trained):
    result, feedback = trained
    assert result["epochs_run"] == 3 and not result["canceled"]
    assert result["validation"]["overall_accuracy"] > 0.7
    accuracy = _accuracy_on(result["output_model"], scenes["eval"], scenes["eval_map"])
    assert accuracy > 0.75, f"accuracy {accuracy:.3f} on a separate scene (chance 0.33)"
    assert any(line.startswith("Epoch 3/3") for line in feedback.lines)
    assert any("XLA-compiled" in line for line in feedback.lines)
    assert any(line.startswith("U-Net:") and "spectral skip" in line for line in feedback.lines)
    meta = read_metadata(result["output_model"])
    assert meta["training"]["xla"] is True
    assert meta["spectral_skip"] is True  # the default
    assert feedback.fractions[-1] == 1.0
    assert all(b >= a - 1e-9 for a, b in zip(feedback.fractions, feedback.fractions[1:]))


def test_batchnorm_statistics_match_the_data_after_a_short_run(scenes, trained):
    """A 60-step run (3 epochs of 20): with Keras's momentum 0.99 the moving statistics
    keep 0.99**60 = 55 % of their initial 0 / 1 (measured in seeds 3-5, worst layer:
    means 0.44-0.74 standard deviations off, log-variances 1.2-2.0 off); with momentum
    0.9 they describe the activations the layers see (0.09-0.16 and 0.31-0.32)."""
    import keras

    from wetland_unet_plugin.core.training.keras_parts import batchnorm_momentum

    result, feedback = trained
    assert read_metadata(result["output_model"])["training"]["batchnorm_momentum"] == 0.9
    assert any(
        "batch-norm momentum 0.9 (statistics of the last 10 steps" in line
        for line in feedback.lines
    )
    # 5 % of the planned steps, within 10 and 100 steps.
    assert [batchnorm_momentum(n) for n in (60, 400, 1000, 5000)] == pytest.approx(
        [0.9, 0.95, 0.98, 0.99]
    )
    loaded = load_model(result["output_model"])
    meta, net = loaded.metadata, loaded.keras_model
    with rasterio.open(scenes["train"]) as src:
        x = normalize(src.read(meta["bands"]), meta["normalization"])[None]
    checked = 0
    for layer in net.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        seen = np.asarray(keras.Model(net.input, layer.input)(x, training=False))
        seen = seen.reshape(-1, seen.shape[-1]).astype(np.float64)
        mean, var = seen.mean(axis=0), seen.var(axis=0) + 1e-3
        mean_error = np.abs(np.asarray(layer.moving_mean) - mean) / np.sqrt(var)
        var_error = np.abs(np.log(np.asarray(layer.moving_variance) + 1e-3) - np.log(var))
        assert np.median(mean_error) < 0.25, (layer.name, np.median(mean_error))
        assert np.median(var_error) < 0.6, (layer.name, np.median(var_error))
        checked += 1
    assert checked == 10  # two per level: 2 down, the bridge, 2 up


def test_metadata_round_trip(scenes, trained):
    result, _ = trained
    meta = read_metadata(result["output_model"])
    loaded = load_model(result["output_model"])
    assert loaded.metadata == meta
    assert meta["class_names"] == ["water", "wetland", "forest"]
    assert len(meta["class_colors"]) == 3 and meta["n_classes"] == 3
    assert meta["bands"] == [1, 2, 3, 4] and meta["n_input_bands"] == 4
    assert meta["patch_size"] == 32 and meta["filters"] == 8 and meta["depth"] == 2
    assert meta["activation"] == "softmax" and meta["loss"] == "categorical"
    assert meta["pixel_size"] == [3.0, 3.0] and "UTM zone 18N" in meta["crs"]
    norm = meta["normalization"]
    assert len(norm["low"]) == 4 and all(h > lo for lo, h in zip(norm["low"], norm["high"]))
    assert len(meta["history"]["loss"]) == len(meta["history"]["val_loss"]) == 3
    val_miou = meta["history"]["val_miou"]
    assert meta["best_epoch_by"].startswith("highest validation mean IoU")
    assert meta["best_val_miou"] == pytest.approx(max(val_miou))
    assert val_miou[meta["best_epoch"] - 1] == max(val_miou)
    kept_loss = meta["history"]["val_loss"][meta["best_epoch"] - 1]
    assert meta["best_val_loss"] == pytest.approx(kept_loss)
    assert np.array(meta["validation"]["confusion_matrix"]).shape == (3, 3)
    assert meta["validation"]["scores"]["overall_accuracy"] == pytest.approx(
        result["validation"]["overall_accuracy"]
    )
    # BALANCE_CLASSES auto: class-balanced patches only when a class has under 5 % of the
    # labelled training pixels; auto weights are equal either way
    counts = np.sum([im["train_pixels_per_class"] for im in meta["data"]["images"]], axis=0)
    sampling = meta["patch_sampling"]
    assert sampling["asked"] == "auto" and meta["training"]["balance_classes"] == "auto"
    assert sampling["shares"] == pytest.approx(list(counts / counts.sum()))
    assert sampling["balanced"] == bool((counts / counts.sum() < 0.05).any())
    assert meta["training"]["balance_classes_used"] == sampling["balanced"]
    assert sampling["description"].startswith(
        "class-balanced (auto: " if sampling["balanced"] else "in proportion to"
    )
    assert "BALANCE_CLASSES" in meta["class_weights"]["formula"]
    assert meta["class_weights"]["values"] == [1.0, 1.0, 1.0]
    assert sum(meta["class_weights"]["frequencies"]) == pytest.approx(1.0)
    assert meta["data"]["pixels_per_class"] == [
        int((scenes["train_map"] == c).sum()) for c in (1, 2, 3)
    ]
    assert meta["training"]["seed"] == 3 and meta["training"]["train_size"] == 160
    assert {"tensorflow", "keras", "numpy", "rasterio", "python"} <= set(meta["versions"])
    assert meta["training_time_s"] > 0 and meta["created"]
    json.dumps(meta, allow_nan=False)  # strict JSON: no NaN anywhere
    json.dumps(result, allow_nan=False)
    assert loaded.keras_model.output_shape[-1] == 3


def test_report_and_csv_log(trained):
    result, _ = trained
    text = open(result["output_report"], encoding="utf-8").read()
    assert text.count("data:image/png;base64,") >= 2  # curves + confusion matrix
    for needle in ("wetland", "IoU", "Parameters", "Data"):
        assert needle in text
    # how the patches were drawn and why (BALANCE_CLASSES auto), and the weights' formula
    meta = read_metadata(result["output_model"])
    assert html.escape(meta["patch_sampling"]["description"]) in text
    assert html.escape(meta["class_weights"]["formula"]) in text
    log = open(os.path.join(os.path.dirname(result["output_model"]), "log.csv")).read()
    assert log.splitlines()[0].startswith("epoch") and len(log.splitlines()) == 4


@pytest.mark.slow
def test_same_seed_gives_identical_weights(scenes, tmp_path):
    """Without XLA: op determinism on."""
    kwargs = dict(TINY, train_size=32, val_size=16, epochs=2, filters=4, seed=11)
    weights = []
    for i in (1, 2):
        out = str(tmp_path / f"m{i}.keras")
        train_model([scenes["train"]], [scenes["train_mask"]], NAMES, out, **kwargs)
        weights.append(load_model(out).keras_model.get_weights())
        assert read_metadata(out)["training"]["xla"] is False
    _assert_same_weights(*weights)


def test_same_seed_gives_identical_weights_with_xla(scenes, trained, tmp_path):
    """With XLA (the default; no op determinism then): the shared model, trained again."""
    result, _ = trained
    out = str(tmp_path / "again.keras")
    train_model(
        [scenes["train"]], [scenes["train_mask"]], NAMES, out, seed=3, **dict(TINY, xla=True)
    )
    assert read_metadata(out)["training"]["xla"] is True
    _assert_same_weights(
        load_model(result["output_model"]).keras_model.get_weights(),
        load_model(out).keras_model.get_weights(),
    )


def _assert_same_weights(first, second) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_xla_compiles_the_training_step_on_cpu():
    """Keras's "auto" leaves XLA off on a CPU-only machine and under op determinism;
    ``xla`` turns it on, which is why a seeded XLA run does without op determinism."""
    import tensorflow as tf

    from wetland_unet_plugin.core.training.keras_parts import compile_model
    from wetland_unet_plugin.core.unet import build_unet

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("Keras's auto choice is XLA on a GPU")
    model = build_unet(3, 3, 4, 2)
    assert compile_model(model, "categorical", 1e-3, xla=True).jit_compile is True
    assert compile_model(model, "categorical", 1e-3, xla=False).jit_compile is False
    tf.config.experimental.enable_op_determinism()
    try:
        assert compile_model(model, "categorical", 1e-3, xla=True).jit_compile is False
    finally:
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()


@pytest.mark.slow
def test_onehot_masks_binary_loss_and_unlabelled_garbage(scenes, tmp_path):
    """Half the scene unlabelled and filled with random spectra: the model still learns."""
    class_map = make_scene(str(tmp_path / "img.tif"), 160, 160, seed=4)
    with rasterio.open(str(tmp_path / "img.tif"), "r+") as dst:
        block = dst.read()
        rng = np.random.default_rng(0)
        block[:, :, :64] = rng.uniform(0, 5000, block[:, :, :64].shape)
        dst.write(block)
    labels = class_map.copy()
    labels[:, :64] = 0
    mask = write_onehot_mask(str(tmp_path / "mask.tif"), labels, str(tmp_path / "img.tif"))
    result = train_model(
        [str(tmp_path / "img.tif")],
        [mask],
        NAMES,
        str(tmp_path / "b.keras"),
        loss="binary",
        seed=2,
        **dict(TINY, epochs=5),
    )
    meta = read_metadata(result["output_model"])
    assert meta["activation"] == "sigmoid" and meta["loss"] == "binary"
    assert meta["data"]["images"][0]["mask_kind"] == "onehot"
    assert meta["data"]["unlabelled_fraction"] == pytest.approx(0.4)
    assert _accuracy_on(result["output_model"], scenes["eval"], scenes["eval_map"]) > 0.7


def test_spectral_skip_adds_the_input_bands_and_a_1x1_head():
    """Parameter count by hand: the last decoder conv takes the bands too (3x3 x bands x
    filters more weights), and the head is a 1x1 convolution of filters + bands inputs to
    filters units with biases; the logits keep their size."""
    from wetland_unet_plugin.core.unet import build_unet

    bands, classes, filters = 4, 3, 8
    plain = build_unet(bands, classes, filters, 2, spectral_skip=False)
    skip = build_unet(bands, classes, filters, 2)
    extra = 9 * bands * filters + (filters + bands) * filters + filters
    assert skip.count_params() - plain.count_params() == extra
    head = skip.get_layer("spectral_head")
    assert head.kernel.shape == (1, 1, filters + bands, filters)
    assert skip.get_layer("up0_conv1").kernel.shape == (3, 3, 2 * filters + bands, filters)
    assert plain.get_layer("up0_conv1").kernel.shape == (3, 3, 2 * filters, filters)


def test_fine_tune_from_init_model(scenes, trained, tmp_path):
    result, _ = trained
    init = read_metadata(result["output_model"])
    out = str(tmp_path / "tuned.keras")
    train_model(
        [scenes["train"]],
        [scenes["train_mask"]],
        NAMES,
        out,
        init_model=result["output_model"],
        seed=4,
        **dict(TINY, epochs=1, filters=16, depth=3),
    )
    meta = read_metadata(out)
    assert meta["training"]["init_model"] == result["output_model"]
    assert meta["normalization"] == init["normalization"]
    assert (meta["filters"], meta["depth"]) == (8, 2)  # the init model's architecture
    assert meta["spectral_skip"] is True
    # A model without the spectral skip stays without it when fine-tuned (asked for or not).
    plain = str(tmp_path / "plain.keras")
    train_model(
        [scenes["train"]],
        [scenes["train_mask"]],
        NAMES,
        plain,
        seed=4,
        **dict(TINY, epochs=1, spectral_skip=False),
    )
    plain_tuned = str(tmp_path / "plain_tuned.keras")
    train_model(
        [scenes["train"]],
        [scenes["train_mask"]],
        NAMES,
        plain_tuned,
        seed=4,
        init_model=plain,
        **dict(TINY, epochs=1, spectral_skip=True),
    )
    assert read_metadata(plain)["spectral_skip"] is False
    assert read_metadata(plain_tuned)["spectral_skip"] is False
    layer_names = {layer.name for layer in load_model(plain_tuned).keras_model.layers}
    assert "spectral_head" not in layer_names and "down0_conv1" in layer_names
    with pytest.raises(CoreError, match="INIT_MODEL .* 3 classes"):
        train_model(
            [scenes["train"]],
            [scenes["train_mask"]],
            "a,b,c,d",
            str(tmp_path / "x.keras"),
            init_model=result["output_model"],
            **TINY,
        )
    with pytest.raises(CoreError, match="BANDS"):
        train_model(
            [scenes["train"]],
            [scenes["train_mask"]],
            NAMES,
            str(tmp_path / "x.keras"),
            init_model=result["output_model"],
            bands="1,2",
            **TINY,
        )
    _no_outputs(tmp_path, str(tmp_path / "x.keras"))


@pytest.mark.slow
def test_cancel_keeps_best_model_so_far_or_nothing(scenes, tmp_path):
    out = str(tmp_path / "c.keras")
    feedback = Recorder(cancel_on="Epoch 1/")
    with pytest.raises(Canceled) as info:
        train_model(
            [scenes["train"]],
            [scenes["train_mask"]],
            NAMES,
            out,
            seed=1,
            feedback=feedback,
            **dict(TINY, epochs=5),
        )
    assert os.path.exists(out) and info.value.result["canceled"]
    meta = read_metadata(out)
    assert meta["canceled"] and meta["epochs_run"] == 1 and meta["best_epoch"] == 1

    out2 = str(tmp_path / "c2.keras")
    feedback = Recorder(cancel_on="U-Net:")  # cancel in the first epoch
    with pytest.raises(Canceled, match="no model was written"):
        train_model(
            [scenes["train"]],
            [scenes["train_mask"]],
            NAMES,
            out2,
            seed=1,
            feedback=feedback,
            **TINY,
        )
    _no_outputs(tmp_path, out2)


# --- the loss and the data pipeline ------------------------------------------------------------


def test_loss_ignores_unlabelled_pixels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (2, 8, 8))
    y_true = np.eye(4, dtype=np.float32)[labels][..., 1:]  # label 0 -> all zeros
    weights = np.array([0.0, 1.0, 2.0, 0.5], np.float32)[labels]
    y_pred = rng.dirichlet(np.ones(3), (2, 8, 8)).astype(np.float32)
    changed = y_pred.copy()
    changed[labels == 0] = rng.dirichlet(np.ones(3), int((labels == 0).sum()))
    from wetland_unet_plugin.core.training.keras_parts import make_loss

    for kind in ("categorical", "binary"):
        loss = make_loss(kind)
        a = float(loss(y_true, y_pred, sample_weight=weights))
        b = float(loss(y_true, changed, sample_weight=weights))
        assert a == pytest.approx(b, rel=1e-6) and a > 0


def _prepared(image, mask, cache_mb, patch=32, balance=True):
    pairs, bands = check_pairs([image], [mask], 3)
    for pair in pairs:
        split_regions(pair, patch, 0.25)
    rng = np.random.default_rng(0)
    scans = [scan_mask(p, 3, rng, keep_labels=True) for p in pairs]
    stats, _ = sample_normalization(pairs, bands, rng)
    sources = build_sources(pairs, scans, bands, stats, 3, cache_mb)
    return pairs, PatchSampler(sources, 3, patch, balance=balance, seed=5)


@pytest.mark.parametrize("cache_mb", [0, 100])
def test_invalid_pixels_are_zero_and_unlabelled(tmp_path, cache_mb):
    image = str(tmp_path / "nd.tif")
    class_map = make_scene(image, 128, 128, seed=2, nodata=-9999)
    with rasterio.open(image, "r+") as dst:
        block = dst.read()
        block[:, 10:30, 10:30] = -9999
        block[1, 40:50, 40:50] = np.nan
        dst.write(block)
    mask = write_mask(str(tmp_path / "m.tif"), class_map, image)
    pairs, sampler = _prepared(image, mask, cache_mb)
    try:
        assert sampler.sources[0].cached == (cache_mb > 0)
        x, labels = sampler.sources[0].read(0, 0, 64)
        assert x.shape == (64, 64, 4) and x.dtype == np.float32
        assert (labels[10:30, 10:30] == 0).all() and (x[10:30, 10:30] == 0).all()
        assert (labels[40:50, 40:50] == 0).all() and np.isfinite(x).all()
        assert (labels[0:10, 0:10] > 0).all()
    finally:
        sampler.close()


def test_labels_under_invalid_image_pixels_count_as_unlabelled(tmp_path):
    """Clouds masked in the image (nodata, NaN, a GDAL mask) weigh in neither the class
    counts (auto class weights) nor the pools of patch centres."""
    image = str(tmp_path / "cloudy.tif")
    class_map = make_scene(image, 96, 80, seed=4, nodata=-9999)
    with rasterio.open(image, "r+") as dst:
        block = dst.read()
        block[:, 5:25, 10:40] = -9999  # a cloud as nodata on every band
        block[2, 50:60, 0:20] = np.nan  # one band's NaN makes the pixel invalid
        dst.write(block)
    mask = write_mask(str(tmp_path / "m.tif"), class_map, image)
    invalid = np.zeros(class_map.shape, bool)
    invalid[5:25, 10:40] = True
    invalid[50:60, 0:20] = True
    expected = np.bincount(np.where(invalid, 0, class_map).ravel(), minlength=4)
    pairs, _ = check_pairs([image], [mask], 3)
    split_regions(pairs[0], 32, 0.25)
    scan = scan_mask(pairs[0], 3, np.random.default_rng(0), keep_labels=True)
    assert scan.counts.tolist() == expected.tolist()
    assert (scan.labels[invalid] == 0).all()
    for rows, cols in scan.pools.values():
        assert not invalid[rows, cols].any()


def test_patches_come_from_separate_regions_and_datasets_weight_labels(scenes):
    pairs, sampler = _prepared(scenes["train"], scenes["train_mask"], 100)
    try:
        pair = pairs[0]
        assert pair.split == "rows" and pair.val.row0 - pair.train.row1 >= 16
        for region, area in (("train", pair.train), ("val", pair.val)):
            for i in range(30):
                rng = patches._derived_rng(5, 9, i)
                _, row, col = sampler._candidate(region, rng)
                assert area.row0 <= row and row + 32 <= area.row1
        # the same patch index gives the same patch; validation is stable across epochs
        a = sampler.patch("val", 3, VAL_STREAM)
        b = sampler.patch("val", 3, VAL_STREAM)
        np.testing.assert_array_equal(a[0], b[0])
        dataset = make_dataset(sampler, "val", 4, 3, [1.0, 2.0, 3.0], count=8, stream=VAL_STREAM)
        batches = list(dataset.as_numpy_iterator())
        assert len(batches) == 2
        x, y, w = batches[0]
        assert x.shape == (4, 32, 32, 4) and y.shape == (4, 32, 32, 3) and w.shape == (4, 32, 32)
        np.testing.assert_array_equal(w, np.array([1.0, 2.0, 3.0])[np.argmax(y, -1)])
    finally:
        sampler.close()


def test_short_wide_image_is_split_along_columns():
    pair = PairInfo(
        0,
        "img.tif",
        "mask.tif",
        200,
        64,
        4,
        "float32",
        None,
        1,
        None,
        "classes",
        "",
        "",
        (3.0, 3.0),
        [],
    )
    split_regions(pair, 32, 0.25)
    assert pair.split == "columns"
    assert pair.train.as_list() == [0, 64, 0, 134] and pair.val.as_list() == [0, 64, 150, 200]


def test_mask_labels_nodata_and_bad_values():
    block = np.array([[[0, 1, 2, 3], [255, 3, 4, 7]]], np.uint8)
    labels, bad = mask_labels(block, "classes", 3, nodata=255)
    assert labels.tolist() == [[0, 1, 2, 3], [0, 3, 0, 0]] and bad.tolist() == [4, 7]
    onehot = np.zeros((3, 1, 3), np.uint8)
    onehot[1, 0, 0] = onehot[2, 0, 1] = 1
    labels, bad = mask_labels(onehot, "onehot", 3)
    assert labels.tolist() == [[2, 3, 0]] and len(bad) == 0


def test_dihedral_gives_eight_distinct_transforms():
    a = np.arange(16).reshape(4, 4)
    outs = {dihedral.augment(a, k).tobytes() for k in range(8)}
    assert len(outs) == 8
    stack = np.stack([a, a * 2], axis=-1)
    for k in range(8):
        np.testing.assert_array_equal(
            dihedral.augment(stack, k)[..., 1], dihedral.augment(a, k) * 2
        )


@pytest.mark.parametrize(
    "balance, asked", [(True, None), (False, None), (True, "auto"), (False, "auto")]
)
def test_auto_weights_are_median_frequency_only_when_balance_classes_is_off(scenes, balance, asked):
    _, sampler = _prepared(scenes["train"], scenes["train_mask"], 100, balance=balance)
    try:
        feedback = Recorder()
        weights, info = choose_class_weights(
            sampler, None, 64, NAMES.split(","), feedback, balance=asked
        )
    finally:
        sampler.close()
    freq = np.array(info["frequencies"])
    assert info["method"] == "auto" and freq.sum() == pytest.approx(1.0) and (freq > 0).all()
    if balance or asked == "auto":
        assert weights == [1.0, 1.0, 1.0] and "BALANCE_CLASSES" in info["formula"]
    else:  # BALANCE_CLASSES off: w_c = median(f) / f_c by hand, from the recorded frequencies
        np.testing.assert_allclose(weights, np.median(freq) / freq, rtol=1e-9)
        assert "median" in info["formula"] and len(set(np.round(weights, 6))) > 1
    assert feedback.lines[-1].startswith("Class weights: water ")
    ending = {
        True: "(auto: equal, the patches are class-balanced).",
        False: "(auto: equal, no class is rare)." if asked == "auto" else "(auto).",
    }
    assert feedback.lines[-1].endswith(ending[balance])


def _scan(train_counts) -> MaskScan:
    train = np.array([0] + list(train_counts))
    return MaskScan(counts=train * 2, train_counts=train, val_counts=train)


def test_balance_classes_auto_balances_only_when_a_class_has_under_5_percent():
    # the quality benchmark's 12 training tiles (training rows): Water 9.1 %, the smallest
    bench = [_scan([171_000, 518_000, 220_000, 91_000])]
    info = resolve_balance("auto", bench, 4)
    assert info["balanced"] is False and info["rare"] == []
    assert info["shares"] == pytest.approx([0.171, 0.518, 0.22, 0.091])
    assert describe_balance(info, ["Forest", "Grass", "Urban", "Water"]) == (
        "in proportion to the classes' labelled pixels (auto: no class under 5% of the "
        "labelled training pixels; the smallest, Water, 9.1%)"
    )
    # the demo's western half, split over two pairs: water 4.6 %, wetland 3.3 %
    demo = [_scan([2_000, 3_296, 10_000, 25_560, 36_036, 0]), _scan([2_560, 0, 9_731, 0, 0, 9_570])]
    names = ["water", "wetland", "forest", "meadow", "farm", "residential"]
    info = resolve_balance("auto", demo, 6)
    assert info["balanced"] is True and info["rare"] == [0, 1]
    assert describe_balance(info, names) == (
        "class-balanced (auto: water 4.6%, wetland 3.3% of the labelled training pixels, under 5%)"
    )
    # a class without training pixels is missing, not rare (train warns about it)
    assert resolve_balance("auto", [_scan([500, 500, 0])], 3)["balanced"] is False
    # on and off are obeyed whatever the shares
    assert resolve_balance("on", bench, 4)["balanced"] is True
    assert resolve_balance("off", demo, 6)["balanced"] is False
    assert describe_balance(resolve_balance("off", demo, 6), names) == (
        "in proportion to the classes' labelled pixels (BALANCE_CLASSES off)"
    )


def test_auto_class_weights_median_frequency():
    weights = auto_class_weights([100, 300, 600, 0])
    assert weights[1] == pytest.approx(1.0) and weights[0] == pytest.approx(3.0)
    assert weights[2] == pytest.approx(0.5) and weights[3] == 1.0
    assert max(auto_class_weights([1, 10**6, 10**6])) == 10.0


# --- bad inputs: a CoreError that says what to do, and no model file ----------------------------

# --- validation split by whole images, radiometric jitter, cosine schedule ----------------


def test_validation_images_are_spread_and_leave_training_images():
    for n, fraction, expected in (
        (12, 0.25, [2, 6, 10]),
        (2, 0.25, [1]),
        (2, 0.9, [1]),
        (5, 0.9, [0, 1, 3, 4]),
        (10, 0.1, [5]),
    ):
        held = validation_image_indices(n, fraction)
        assert held == expected
        n_val = min(max(1, round(n * fraction)), n - 1)  # at least 1, never all
        assert len(held) == n_val and len(set(held)) == n_val
        assert all(0 <= i < n for i in held)


def test_image_split_keeps_training_and_validation_pixels_disjoint(tmp_path):
    paths = []
    for seed in (1, 2, 3, 4):
        image = str(tmp_path / f"img{seed}.tif")
        class_map = make_scene(image, 96, 80, seed=seed)
        paths.append(
            (image, write_mask(str(tmp_path / f"mask{seed}.tif"), class_map, image), class_map)
        )
    pairs, bands = check_pairs([p[0] for p in paths], [p[1] for p in paths], 3)
    split_images(pairs, 32, 0.25)  # 1 of 4 images: index 2
    assert [p.split for p in pairs] == ["training image"] * 2 + [
        "validation image",
        "training image",
    ]
    rng = np.random.default_rng(0)
    scans = [scan_mask(p, 3, rng, keep_labels=True) for p in pairs]
    for pair, scan, (_, _, class_map) in zip(pairs, scans, paths):
        whole = [int((class_map == c).sum()) for c in (0, 1, 2, 3)]
        assert scan.counts.tolist() == whole
        if pair.train is None:  # the validation image, whole
            assert pair.val.as_list() == [0, 80, 0, 96]
            assert scan.train_counts.sum() == 0 and scan.val_counts.tolist() == whole
            assert not any(key[0] == "train" for key in scan.pools)
        else:  # training images, whole
            assert pair.val is None and pair.train.as_list() == [0, 80, 0, 96]
            assert scan.val_counts.sum() == 0 and scan.train_counts.tolist() == whole
            assert not any(key[0] == "val" for key in scan.pools)
    stats, _ = sample_normalization(pairs, bands, rng)
    sources = build_sources(pairs, scans, bands, stats, 3, 100)
    sampler = PatchSampler(sources, 3, 32, seed=5)
    try:
        for region, allowed in (("train", {0, 1, 3}), ("val", {2})):
            seen = set()
            for i in range(60):
                s, row, col = sampler._candidate(region, patches._derived_rng(5, 9, i))
                assert s in allowed and 0 <= row <= 80 - 32 and 0 <= col <= 96 - 32
                seen.add(s)
            assert seen == allowed
    finally:
        sampler.close()


def test_image_split_needs_two_images():
    pair = PairInfo(
        0,
        "img.tif",
        "mask.tif",
        200,
        64,
        4,
        "float32",
        None,
        1,
        None,
        "classes",
        "",
        "",
        (3.0, 3.0),
        [],
    )
    with pytest.raises(CoreError, match="at least two image/mask pairs"):
        split_images([pair], 32, 0.25)


def test_radiometric_jitter_is_a_bounded_gain_and_offset_per_band():
    rng = np.random.default_rng(4)
    image = rng.uniform(-0.5, 1.5, (32, 32, 4)).astype(np.float32)
    image[:5, :5] = 0.0  # invalid pixels (all bands 0)
    before = image.copy()
    amount = 0.05
    gains, offsets = [], []
    for seed in range(20):
        out = radiometric_jitter(image, amount, np.random.default_rng(seed))
        np.testing.assert_array_equal(image, before)  # the input is not modified
        assert out.dtype == np.float32 and out.shape == image.shape
        assert (out[:5, :5] == 0).all()  # invalid pixels stay 0
        valid = np.ones((32, 32), bool)
        valid[:5, :5] = False
        for b in range(4):
            x, y = image[..., b][valid], out[..., b][valid]
            gain, offset = np.polyfit(x.astype(np.float64), y.astype(np.float64), 1)
            np.testing.assert_allclose(y, gain * x + offset, atol=1e-5)  # exactly affine
            assert abs(gain - 1) <= amount + 1e-6 and abs(offset) <= amount + 1e-6
            # band statistics move by bounded amounts
            assert abs(y.mean() - x.mean()) <= amount * abs(x.mean()) + amount + 1e-5
            assert abs(y.std() / x.std() - 1) <= amount + 1e-5
            gains.append(gain)
            offsets.append(offset)
    assert np.std(gains) > amount / 5 and np.std(offsets) > amount / 5  # really random


def test_jittered_patches_keep_their_labels(scenes):
    pairs, plain = _prepared(scenes["train"], scenes["train_mask"], 100)
    jittery = PatchSampler(plain.sources, 3, 32, seed=5, jitter=0.1)
    try:
        changed = 0
        for i in range(10):
            x0, y0 = plain.patch("train", i, TRAIN_STREAM, augment=True)
            x1, y1 = jittery.patch("train", i, TRAIN_STREAM, augment=True)
            np.testing.assert_array_equal(y0, y1)  # same patch, same labels
            for b in range(x0.shape[-1]):
                gain, offset = np.polyfit(x0[..., b].ravel(), x1[..., b].ravel(), 1)
                np.testing.assert_allclose(x1[..., b], gain * x0[..., b] + offset, atol=1e-5)
                assert abs(gain - 1) <= 0.1 + 1e-6 and abs(offset) <= 0.1 + 1e-6
            changed += not np.array_equal(x0, x1)
            # without augmentation (validation) there is no jitter
            v0, _ = plain.patch("val", i, VAL_STREAM)
            v1, _ = jittery.patch("val", i, VAL_STREAM)
            np.testing.assert_array_equal(v0, v1)
        assert changed == 10
    finally:
        jittery.close()
        plain.close()


def _cosine(progress, lr):
    """5% linear warmup from 0, then cosine decay to 1% of lr, written out."""
    if progress < 0.05:
        return lr * progress / 0.05
    done = (progress - 0.05) / 0.95
    return lr * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * done)))


def test_cosine_schedule_follows_the_formula():
    lr = 0.002
    for progress in (0.0, 0.01, 0.025, 0.049, 0.05, 0.1, 0.3, 0.525, 0.8, 0.99, 1.0):
        assert cosine_rate(progress, lr) == pytest.approx(
            _cosine(progress, lr), rel=1e-12, abs=1e-15
        )
    assert cosine_rate(0.05, lr) == pytest.approx(lr)
    assert cosine_rate(0.525, lr) == pytest.approx(lr * (0.01 + 0.99 * 0.5))  # half-way
    assert cosine_rate(1.0, lr) == pytest.approx(lr * 0.01)
    assert cosine_rate(1.7, lr) == cosine_rate(1.0, lr) and cosine_rate(-1, lr) == 0.0
    rates = [cosine_rate(k / 100, lr) for k in range(5, 101)]
    assert all(b <= a for a, b in zip(rates, rates[1:]))  # decays monotonically
    # progress of step k (0-based) of N: (k + 1) / N, or the share of the time limit used
    assert schedule_progress(0, 200) == pytest.approx(1 / 200)
    assert schedule_progress(99, 200) == pytest.approx(0.5)
    assert schedule_progress(99, 200, elapsed_s=30, time_limit_s=40) == pytest.approx(0.75)
    assert schedule_progress(99, 200, elapsed_s=10, time_limit_s=40) == pytest.approx(0.5)
    assert schedule_progress(500, 200) == 1.0


@pytest.mark.slow
def test_training_with_image_split_cosine_schedule_and_jitter(scenes, tmp_path):
    feedback = Recorder()
    kwargs = dict(TINY, train_size=64, val_size=16, epochs=3, seed=2)  # 8 steps per epoch
    result = train_model(
        [scenes["train"], scenes["eval"]],
        [scenes["train_mask"], scenes["eval_mask"]],
        NAMES,
        str(tmp_path / "m.keras"),
        val_split="images",
        lr_schedule="cosine",
        jitter=0.05,
        dropout=0.0,
        reduce_lr_patience=1,
        feedback=feedback,
        **kwargs,
    )
    meta = read_metadata(result["output_model"])
    training = meta["training"]
    assert training["val_split"] == "images" and training["lr_schedule"] == "cosine"
    assert training["jitter"] == 0.05 and meta["dropout"] == 0.0
    images = meta["data"]["images"]
    assert [i["split"] for i in images] == ["training image", "validation image"]
    assert images[0]["val_region"] is None and images[0]["train_region"] == [0, 160, 0, 160]
    assert images[1]["train_region"] is None and images[1]["val_region"] == [0, 96, 0, 96]
    assert "held back whole" in meta["validation"]["description"]
    # the rate logged after epoch e is the one of its last step, 8 e of 24 (no plateau
    # halving although reduce_lr_patience is 1)
    lr = TINY["learning_rate"]
    expected = [_cosine(8 * e / 24, lr) for e in (1, 2, 3)]
    np.testing.assert_allclose(meta["history"]["learning_rate"], expected, rtol=1e-5)
    assert any("Validation images" in line and "eval.tif" in line for line in feedback.lines)


@pytest.mark.slow
def test_time_limit_stops_training_after_an_epoch(scenes, tmp_path):
    feedback = Recorder()
    kwargs = dict(TINY, train_size=16, val_size=8, epochs=4, filters=4, seed=2)
    result = train_model(
        [scenes["train"]],
        [scenes["train_mask"]],
        NAMES,
        str(tmp_path / "m.keras"),
        time_limit=1e-4,
        lr_schedule="cosine",
        feedback=feedback,
        **kwargs,
    )  # 6 ms: one epoch, then stop
    assert result["epochs_run"] == 1 and result["stopped_early"]
    meta = read_metadata(result["output_model"])
    assert meta["training"]["time_limit_min"] == 1e-4
    assert len(meta["history"]["loss"]) == 1
    # the cosine schedule ran on the time limit's clock: it ended at its final rate
    assert meta["history"]["learning_rate"][0] == pytest.approx(TINY["learning_rate"] * 0.01)
    assert any("Stopped after epoch 1: the time limit" in line for line in feedback.lines)


@pytest.fixture(scope="module")
def bad(scenes, tmp_path_factory):
    """Rasters that break one rule each."""
    folder = tmp_path_factory.mktemp("bad")
    d = {"folder": folder}
    on_grid = functools.partial(write_raster, transform=DEFAULT_TRANSFORM)  # the scenes' grid
    train_map = scenes["train_map"]
    d["shifted_mask"] = on_grid(
        str(folder / "shifted.tif"),
        train_map[None],
        transform=from_origin(500003.0, 4500000.0, 3.0, 3.0),
    )
    d["mask_values"] = on_grid(
        str(folder / "values.tif"), np.where(train_map == 3, 5, train_map).astype(np.uint8)[None]
    )
    d["image8"] = str(folder / "img8.tif")
    make_scene(d["image8"], 160, 160, n_bands=8, seed=1)
    d["empty_mask"] = on_grid(str(folder / "empty.tif"), np.zeros((1, 160, 160), np.uint8))
    d["nodata_image"] = on_grid(
        str(folder / "nodata.tif"), np.full((4, 160, 160), -1, np.float32), nodata=-1
    )
    d["two_band_mask"] = on_grid(
        str(folder / "twoband.tif"), np.stack([train_map, train_map]).astype(np.uint8)
    )
    top_only = train_map.copy()
    top_only[100:] = 0
    d["top_only_mask"] = on_grid(str(folder / "top.tif"), top_only.astype(np.uint8)[None])
    d["small"] = str(folder / "small.tif")
    small_map = make_scene(d["small"], 48, 48, seed=3)
    d["small_mask"] = write_mask(str(folder / "small_mask.tif"), small_map, d["small"])
    return d


BAD_CASES = {
    "count mismatch": (
        lambda s, b: dict(images=[s["train"], s["eval"]], masks=[s["train_mask"]]),
        "2 IMAGES but 1 MASKS",
    ),
    "different grids": (
        lambda s, b: dict(masks=[b["shifted_mask"]]),
        "not on the same pixel grid.*wetlandunet:alignpair",
    ),
    "mask values above N": (
        lambda s, b: dict(masks=[b["mask_values"]]),
        "values that are not class ids: 5.*CLASS_NAMES",
    ),
    "band counts differ": (
        lambda s, b: dict(
            images=[s["train"], b["image8"]], masks=[s["train_mask"], s["train_mask"]]
        ),
        "different band counts",
    ),
    "bands out of range": (lambda s, b: dict(bands="1,5"), "BANDS 5 out of range.*1..4"),
    "band zero": (lambda s, b: dict(bands="0,1"), "BANDS 0 out of range.*start at 1"),
    "patch not multiple": (lambda s, b: dict(patch_size=30), "not a multiple of 2\\*\\*DEPTH"),
    "patch larger than image": (
        lambda s, b: dict(patch_size=192),
        "PATCH_SIZE 192 is larger than the image",
    ),
    "no labelled pixels": (lambda s, b: dict(masks=[b["empty_mask"]]), "no labelled pixels"),
    "all-nodata image": (
        lambda s, b: dict(images=[b["nodata_image"]]),
        "no valid pixel.*cleaninvalid",
    ),
    "mask band count": (lambda s, b: dict(masks=[b["two_band_mask"]]), "has 2 bands"),
    "no labels in validation strip": (
        lambda s, b: dict(masks=[b["top_only_mask"]]),
        "validation strips.*VAL_FRACTION",
    ),
    "image too small for a validation strip": (
        lambda s, b: dict(images=[b["small"]], masks=[b["small_mask"]]),
        "too small for a training part and a separate validation strip",
    ),
    "report overwrites an input": (lambda s, b: dict(output_report=s["train"]), "is also an input"),
    "model extension": (
        lambda s, b: dict(output_model=str(b["folder"] / "model.h5")),
        "must end in .keras",
    ),
    "class weights count": (lambda s, b: dict(class_weights="1,2"), "CLASS_WEIGHTS has 2"),
    "class colours": (lambda s, b: dict(class_colors="#ff0000"), "CLASS_COLORS has 1"),
    "val fraction": (lambda s, b: dict(val_fraction=0), "VAL_FRACTION must be above 0"),
    "missing image": (lambda s, b: dict(images=[str(b["folder"] / "nope.tif")]), "does not exist"),
    "image split of one image": (
        lambda s, b: dict(val_split="images"),
        "at least two image/mask pairs",
    ),
    "no labels in validation images": (
        lambda s, b: dict(
            images=[s["train"], s["train"]],
            val_split="images",
            masks=[s["train_mask"], b["empty_mask"]],
        ),
        "validation images.*VAL_SPLIT",
    ),
    "lr schedule": (lambda s, b: dict(lr_schedule="step"), "LR_SCHEDULE must be one of"),
    "val split": (lambda s, b: dict(val_split="columns"), "VAL_SPLIT must be one of"),
    "jitter": (lambda s, b: dict(jitter=0.8), "JITTER must be"),
    "dropout": (lambda s, b: dict(dropout=1.5), "DROPOUT must be"),
    "time limit": (lambda s, b: dict(time_limit=-2), "TIME_LIMIT must be at least -1"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_inputs_fail_before_training(scenes, bad, case):
    make_args, message = BAD_CASES[case]
    output = str(bad["folder"] / "model.keras")
    args = dict(
        images=[scenes["train"]],
        masks=[scenes["train_mask"]],
        class_names=NAMES,
        output_model=output,
        **TINY,
    )
    args.update(make_args(scenes, bad))
    with pytest.raises(CoreError, match=message):
        train_model(**args)
    _no_outputs(bad["folder"], output, str(bad["folder"] / "model.h5"))
