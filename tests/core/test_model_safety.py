"""Untrusted model files never run code; training that diverges stops with advice."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from wetland_unet_plugin.core.feedback import CoreError
from wetland_unet_plugin.core.modelfile import load_model, read_metadata, save_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CRAFT = r"""
import sys, keras
from wetland_unet_plugin.core.modelfile import save_model
marker, path = sys.argv[1], sys.argv[2]
inputs = keras.Input((None, None, 4))
# The Lambda writes a marker file whenever Keras builds it: on load, the model is
# rebuilt by calling every layer, so loading this file unsafely would run the code.
payload = eval("lambda x: (open(%r, 'w').write('pwned'), x)[1]" % marker)
outputs = keras.layers.Lambda(payload)(inputs)
model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(outputs))
import os
os.remove(marker)  # building it above wrote the marker once: start clean
save_model(model, {"class_names": ["a", "b"], "class_colors": ["#000000", "#ffffff"],
                   "n_classes": 2, "bands": [1, 2, 3, 4]}, path)
"""

UNSAFE_LOAD = r"""
import sys, keras
keras.config.enable_unsafe_deserialization()
keras.saving.load_model(sys.argv[1], safe_mode=False, compile=False)
"""


@pytest.fixture
def lambda_model(tmp_path):
    marker = str(tmp_path / "marker.txt")
    path = str(tmp_path / "evil.keras")
    subprocess.run(
        [sys.executable, "-c", CRAFT, marker, path],
        check=True,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert os.path.isfile(path) and not os.path.exists(marker)
    return path, marker


@pytest.mark.slow
def test_lambda_model_is_refused_and_its_code_never_runs(lambda_model):
    """load_model refuses the Lambda layer; the marker file is never written."""
    path, marker = lambda_model
    assert read_metadata(path)["class_names"] == ["a", "b"]  # metadata alone is harmless
    with pytest.raises(CoreError, match="Lambda"):
        load_model(path)
    assert not os.path.exists(marker)


@pytest.mark.slow
def test_the_crafted_file_really_would_run_code_if_loaded_unsafely(lambda_model):
    """Control: Keras with safe mode off does run the Lambda, so the test above means something."""
    path, marker = lambda_model
    subprocess.run(
        [sys.executable, "-c", UNSAFE_LOAD, path], cwd=ROOT, capture_output=True, timeout=120
    )
    assert os.path.exists(marker)


@pytest.mark.slow
def test_unknown_custom_objects_are_refused(tmp_path):
    """A layer from a module outside Keras would have to import and run foreign code."""
    import keras

    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    path = str(tmp_path / "m.keras")
    save_model(model, {"class_names": ["a", "b"]}, path)
    patched = str(tmp_path / "patched.keras")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(patched, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                layer = config["config"]["layers"][-1]
                layer["module"] = "evil_package.layers"
                layer["registered_name"] = "Custom>Backdoor"
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(CoreError, match="custom object"):
        load_model(patched)


def test_foreign_keras_file_without_metadata_is_refused(tmp_path):
    """A plain Keras model is not a Wetland U-Net model: say what is missing."""
    import keras

    inputs = keras.Input((None, None, 3))
    path = str(tmp_path / "plain.keras")
    keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs)).save(path)
    with pytest.raises(CoreError, match="not a Wetland U-Net model"):
        load_model(path)


@pytest.mark.slow
def test_training_that_diverges_stops_with_advice(tmp_path):
    """An absurd learning rate makes the loss NaN: error names LEARNING_RATE, no model."""
    sys.path.insert(0, os.path.dirname(__file__))
    from synthetic import make_scene, write_mask

    from wetland_unet_plugin.core.training import train_model

    image = str(tmp_path / "img.tif")
    classes = make_scene(image, 96, 96, seed=2)
    mask = write_mask(str(tmp_path / "mask.tif"), classes, image)
    model = str(tmp_path / "m.keras")
    with pytest.raises(CoreError, match="LEARNING_RATE"):
        train_model(
            [image],
            [mask],
            "a,b,c",
            model,
            patch_size=32,
            batch_size=4,
            train_size=32,
            val_size=8,
            epochs=3,
            filters=4,
            depth=2,
            learning_rate=1e30,
            seed=1,
        )
    assert not os.path.exists(model)


def test_debug_mode_asserts_finite_inputs_at_the_model_boundary(monkeypatch):
    """With WETLAND_UNET_DEBUG=1 a NaN reaching the model raises; normalised data never has one."""
    import numpy as np

    from wetland_unet_plugin.core.normalize import check_finite, normalize

    block = np.array([[[1.0, np.nan], [np.inf, 4.0]]], dtype=np.float32)
    stats = {"low": [0.0], "high": [4.0]}
    monkeypatch.setenv("WETLAND_UNET_DEBUG", "1")
    clean = normalize(block, stats)
    assert check_finite(clean, "test") is clean
    np.testing.assert_array_equal(clean[..., 0], [[0.25, 0.0], [0.0, 1.0]])
    with pytest.raises(AssertionError, match="2 NaN/Inf values in raw tiles"):
        check_finite(block, "raw tiles")
    monkeypatch.setenv("WETLAND_UNET_DEBUG", "0")
    assert check_finite(block, "raw tiles") is block


def test_normalize_scales_clips_and_zeroes_invalid_pixels_channels_last_into_a_batch_slot():
    """(raw - low) / (high - low), clipped to [-1, 2], 0 where invalid, channels last; with
    ``out`` the result lands in the given batch slot and nothing else is touched."""
    import numpy as np

    from wetland_unet_plugin.core.normalize import normalize

    # band 1 spans 100..300, band 2 spans 1000..5000
    block = np.array(
        [[[100, 200, 300], [0, 900, 65535]], [[1000, 3000, 5000], [1000, 21000, 1000]]],
        dtype=np.uint16,
    )
    stats = {"low": [100.0, 1000.0], "high": [300.0, 5000.0]}
    valid = np.array([[True, True, True], [True, True, False]])
    expected = np.array(
        [
            [[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]],
            [[-0.5, 0.0], [2.0, 2.0], [0.0, 0.0]],  # 900 -> 4.0 and 21000 -> 5.0 clip to 2
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(normalize(block, stats, valid), expected)
    batch = np.full((3, 2, 3, 2), 7.0, dtype=np.float32)
    result = normalize(block, stats, valid, out=batch[1])
    assert np.shares_memory(result, batch)
    np.testing.assert_array_equal(batch[1], expected)
    assert (batch[0] == 7.0).all() and (batch[2] == 7.0).all()
    assert block[1, 1, 1] == 21000  # the input is not modified


def test_normalize_of_huge_integers_whose_range_vanishes_in_float32_is_finite():
    """low and high 1 apart at 2**30 are one float32: the division gives NaN and Inf,
    which become 0 like any non-finite value."""
    import numpy as np

    from wetland_unet_plugin.core.normalize import normalize

    block = np.array([[[2**30, 2**30 + 128]]], dtype=np.uint32)
    stats = {"low": [float(2**30)], "high": [float(2**30 + 1)]}
    with np.errstate(divide="ignore", invalid="ignore"):
        result = normalize(block, stats)
    np.testing.assert_array_equal(result[..., 0], [[0.0, 0.0]])
