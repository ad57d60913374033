"""Tiled prediction: geometry, blending, nodata, TTA, bands, errors, cancel, model cache.

Tiny models only (a depth-1 U-Net with 4 filters, and hand-made 1x1 / 3x3
convolution models whose output depends on position), tiny scenes.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.recorder import Recorder
from wetland_unet_plugin.core import dihedral
from wetland_unet_plugin.core.feedback import Canceled, CoreError, Feedback
from wetland_unet_plugin.core.inference import scene as inference_scene
from wetland_unet_plugin.core.inference.cache import (
    clear_model_cache,
    get_cached_model,
    model_cache_info,
)
from wetland_unet_plugin.core.inference.folding import cast_model, inference_function
from wetland_unet_plugin.core.inference.outputs import Blender, argmax_planes, gdal_cache_bytes
from wetland_unet_plugin.core.inference.predictors import get_predictor
from wetland_unet_plugin.core.inference.scene import predict_scene, run_scene
from wetland_unet_plugin.core.inference.tiling import (
    EDGE_CONTEXT,
    default_overlap,
    default_tile_size,
    merge_row,
    plan_tiles,
    reflect_index,
    valid_crop,
    weight_window_1d,
)
from wetland_unet_plugin.core.modelfile import load_model, save_model

CRS = "EPSG:32633"


# --------------------------------------------------------------------------- helpers


def write_raster(path, array, nodata=None, res=10.0, crs=CRS):
    """Write (bands, rows, cols) to a GeoTIFF; return the path."""
    array = np.asarray(array)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[2],
        height=array.shape[1],
        count=array.shape[0],
        dtype=array.dtype,
        crs=crs,
        nodata=nodata,
        transform=from_origin(500000, 5800000, res, res),
    ) as dst:
        dst.write(array)
    return str(path)


def read(path):
    with rasterio.open(path) as src:
        return src.read()


def save(
    keras_model,
    path,
    n_classes,
    depth,
    bands=None,
    n_bands=None,
    low=0.0,
    high=1.0,
    patch=64,
    pixel_size=(10, 10),
):
    """Save a model with hand-written metadata like the training step writes."""
    channels = int(keras_model.inputs[0].shape[-1])
    names = [f"c{i + 1}" for i in range(n_classes)]
    meta = {
        "class_names": names,
        "class_colors": ["#1f78b4", "#33a5a0", "#1b7837", "#d73027"][:n_classes],
        "n_classes": n_classes,
        "bands": bands,
        "n_input_bands": n_bands or channels,
        "normalization": {"low": [low] * channels, "high": [high] * channels},
        "patch_size": patch,
        "filters": 4,
        "depth": depth,
        "activation": "softmax",
        "pixel_size": list(pixel_size),
        "crs": CRS,
    }
    save_model(keras_model, meta, str(path))
    return str(path)


def pointwise_model(channels=1, gain=8.0):
    """1x1 conv + softmax: p1 = sigmoid(2 * gain * (x - 0.5)); equivariant to every transform."""
    import keras
    from keras import layers

    inputs = keras.Input((None, None, channels))
    conv = layers.Conv2D(2, 1, name="logits")
    x = conv(inputs)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((1, 1, channels, 2), np.float32)
    kernel[0, 0, 0] = [gain, -gain]
    conv.set_weights([kernel, np.array([-gain / 2, gain / 2], np.float32)])
    return model


def shift_model(gain=4.0):
    """3x3 conv reading the right-hand neighbour only: NOT rotation or flip invariant."""
    import keras
    from keras import layers

    inputs = keras.Input((None, None, 1))
    conv = layers.Conv2D(2, 3, padding="same", use_bias=False, name="logits")
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(conv(inputs))
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((3, 3, 1, 2), np.float32)
    kernel[1, 2, 0] = [gain, -gain]  # kernel[row, col]: col 2 = right neighbour
    conv.set_weights([kernel])
    return model


def shift_expectations(x):
    """What ``shift_model`` gives on the interior of ``x`` (rows, cols) seen by each
    transform: class-1 probability of the right, left, lower and upper neighbour
    (TTA averages them: 1 -> right, 2 -> right and left, 4 and 8 -> all four)."""

    def p1(values):
        return sigmoid(8.0 * values)

    return (p1(x[1:-1, 2:]), p1(x[1:-1, :-2]), p1(x[2:, 1:-1]), p1(x[:-2, 1:-1]))


def record_model_calls(monkeypatch) -> list:
    """Make ``predict_scene`` record the shape of every batch it sends to the model;
    returns the list the shapes are appended to."""
    sent = []
    real = inference_scene.get_predictor

    def recording(*args, **kwargs):
        predictor = real(*args, **kwargs)

        def record(batch):
            sent.append(batch.shape)
            return predictor(batch)

        record.crop_tiles = getattr(predictor, "crop_tiles", True)
        return record

    monkeypatch.setattr(inference_scene, "get_predictor", recording)
    return sent


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def smooth_scene(rng, bands, rows, cols):
    from scipy.ndimage import gaussian_filter

    img = np.stack([gaussian_filter(rng.random((rows, cols)), 3) for _ in range(bands)])
    img = (img - img.min()) / (img.max() - img.min())
    return img.astype(np.float32)


class CancelAfter(Feedback):
    """Cancels once ``is_canceled`` has been asked ``n`` times."""

    def __init__(self, n):
        self.n = n
        self.calls = 0
        self.warnings = []

    def is_canceled(self):
        self.calls += 1
        return self.calls > self.n

    def warning(self, text):
        self.warnings.append(text)


@pytest.fixture(scope="module")
def unet_file(tmp_path_factory):
    """A depth-1, 4-filter U-Net on 3 bands, 3 classes, with decisive logits."""
    import keras

    from wetland_unet_plugin.core.unet import build_unet

    keras.utils.set_random_seed(3)
    model = build_unet(3, 3, filters=4, depth=1, dropout=0.0)
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel * 20, bias])
    return save(model, tmp_path_factory.mktemp("m") / "unet.keras", 3, depth=1)


@pytest.fixture(scope="module")
def pointwise_file(tmp_path_factory):
    return save(pointwise_model(), tmp_path_factory.mktemp("m") / "point.keras", 2, depth=1)


# --------------------------------------------------------------------------- pure functions


def test_dihedral_pairs_invert_and_match_tensorflow():
    """The one dihedral table: numpy, TensorFlow (the TensorFlow predictor) and Keras ops
    (the portable predictor of the JAX and PyTorch backends) agree."""
    import tensorflow as tf

    x = np.random.default_rng(0).random((2, 6, 6, 3)).astype(np.float32)
    seen = set()
    for k in range(8):
        forward = dihedral.forward(x, k)
        assert np.array_equal(dihedral.inverse(forward, k), x)
        assert np.array_equal(dihedral.tf_forward(tf.constant(x), k).numpy(), forward)
        assert np.array_equal(dihedral.tf_inverse(tf.constant(forward), k).numpy(), x)
        assert np.array_equal(np.asarray(dihedral.ops_forward(tf.constant(x), k)), forward)
        assert np.array_equal(np.asarray(dihedral.ops_inverse(tf.constant(forward), k)), x)
        seen.add(forward.tobytes())
    assert len(seen) == 8  # eight distinct transforms
    assert np.array_equal(dihedral.forward(x, 0), x)
    assert dihedral.TTA_TRANSFORMS[1] == (0,)
    assert set(dihedral.TTA_TRANSFORMS[8]) == set(range(8))
    with pytest.raises(CoreError):
        dihedral.tta_transforms(3)


def test_identity_transform_set_is_the_plain_model(unet_file, pointwise_file):
    loaded = load_model(unet_file)
    x = np.random.default_rng(9).random((2, 32, 32, 3)).astype(np.float32)
    assert dihedral.tta_transforms(1) == (0,)
    # the predictor runs the folded inference graph: float32 rounding differs, no more
    np.testing.assert_allclose(
        get_predictor(loaded, tta=1)(x),
        np.asarray(loaded.keras_model(x, training=False)),
        rtol=0,
        atol=2e-5,
    )
    # a pointwise model is equivariant: every TTA set gives the plain prediction back
    point = load_model(pointwise_file)
    x = np.random.default_rng(10).random((3, 32, 32, 1)).astype(np.float32)
    plain = get_predictor(point, tta=1)(x)
    for tta in (2, 4, 8):
        np.testing.assert_allclose(get_predictor(point, tta=tta)(x), plain, atol=1e-6)


def test_weight_window_is_partition_of_unity_and_grid_covers_scene():
    grid = plan_tiles(157, 203, 64, 16, depth=2)
    w = weight_window_1d(grid.tile, grid.margin, grid.ramp)
    assert w[: grid.margin].max() == 0 and w[grid.tile // 2] == 1
    total = np.zeros(grid.padded_width)
    for j in range(grid.n_cols):
        total[j * grid.stride : j * grid.stride + grid.tile] += w
    scene = total[grid.pad : grid.pad + grid.width]
    assert scene.min() > 0
    inner = scene[grid.margin + grid.ramp : -(grid.margin + grid.ramp)]
    np.testing.assert_allclose(inner, 1.0, atol=1e-6)
    assert grid.pad % 4 == 0 and grid.stride % 4 == 0
    np.testing.assert_array_equal(
        reflect_index(np.arange(-3, 8), 5), [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]
    )
    assert default_tile_size(160, 5) == 512 and default_tile_size(600, 5) == 608
    assert default_tile_size(32, 3) == 512  # the small MODEL_SIZE's 32 px patches
    assert default_overlap(256, 5) == 64 and default_overlap(64, 2) == 16
    # the overlap does not grow with the tile: its dead zone and ramp are edge distances;
    # DEPTH 3 and shallower networks stop at 32, deeper ones at 64
    assert default_overlap(512, 5) == 64 and default_overlap(512, 3) == 32
    assert default_overlap(1024, 3) == 32 and default_overlap(1024, 4) == 64
    assert default_overlap(256, 1) == 24  # 2 * receptive margin (2 + 4) * 2


def test_class_is_the_first_largest_plane_like_numpy_argmax():
    # hand-built: ties go to the lower class, as in np.argmax
    planes = np.array(
        [
            [[0.1, 0.5, 0.3], [0.2, 0.2, 0.0]],
            [[0.7, 0.5, 0.3], [0.2, 0.1, 0.0]],
            [[0.2, 0.0, 0.4], [0.6, 0.7, 0.0]],
        ],
        dtype=np.float32,
    )
    got = argmax_planes(planes)
    np.testing.assert_array_equal(got, [[1, 0, 2], [2, 2, 0]])
    assert got.dtype == np.uint8
    rng = np.random.default_rng(3)
    many = rng.integers(0, 4, (6, 50, 70)).astype(np.float32)  # many ties
    np.testing.assert_array_equal(argmax_planes(many), np.argmax(many, axis=0))
    np.testing.assert_array_equal(argmax_planes(many[:1]), 0)


def test_inference_graph_folds_batchnorm_and_matches_the_model():
    import keras

    from wetland_unet_plugin.core.unet import build_unet

    keras.utils.set_random_seed(11)
    model = build_unet(3, 4, filters=4, depth=2, dropout=0.2)
    rng = np.random.default_rng(11)
    n_bn = 0
    for layer in model.layers:  # trained-looking statistics, so folding is not a no-op
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    gamma * rng.uniform(0.5, 2, gamma.shape),
                    beta + rng.normal(0, 0.3, beta.shape),
                    mean + rng.normal(0, 0.3, mean.shape),
                    var * rng.uniform(0.3, 3, var.shape),
                ]
            )
            n_bn += 1
    n_drop = sum(isinstance(layer, keras.layers.SpatialDropout2D) for layer in model.layers)
    forward, info = inference_function(model)
    # every BN folded into its convolution; those, the spectral head's 1x1 convolution (its
    # ReLU included) and the logits run as conv + bias (+ ReLU)
    assert info == {"folded": n_bn, "fused": n_bn + 2, "dropped": n_drop} and n_drop > 0
    x = rng.random((2, 32, 48, 3)).astype(np.float32)  # not square: any multiple of 4
    want = np.asarray(model(x, training=False))
    np.testing.assert_allclose(np.asarray(forward(x)), want, rtol=0, atol=1e-5)
    # mixed precision: the folded convolutions compute in bfloat16, output stays float32
    cast = cast_model(model, "mixed_bfloat16")
    forward16, _ = inference_function(cast)
    got16 = np.asarray(forward16(x))
    assert got16.dtype == np.float32 and np.abs(got16 - want).mean() < 0.05


def test_inference_graph_falls_back_for_graphs_it_does_not_handle(tmp_path):
    import keras
    from keras import layers

    inputs = keras.Input((None, None, 1))
    shared = layers.Conv2D(1, 1, name="shared")
    x = shared(shared(inputs))  # one layer called twice
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(
        layers.Conv2D(2, 1, name="logits")(x)
    )
    model = keras.Model(inputs, outputs)
    assert inference_function(model) is None
    loaded = load_model(save(model, tmp_path / "shared.keras", 2, depth=1))
    x = np.random.default_rng(12).random((1, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(
        get_predictor(loaded)(x), np.asarray(loaded.keras_model(x, training=False)), atol=1e-6
    )


def test_valid_crop_covers_every_weighted_valid_pixel_with_context():
    grid = plan_tiles(308, 400, 128, 32, depth=3)
    assert grid.multiple == 8 and grid.crop_context == 32 - grid.margin == 20
    assert grid.pad == 16 and grid.stride == 96 and grid.n_rows == 4 and EDGE_CONTEXT == 8
    valid = np.zeros((grid.tile, grid.width), bool)
    assert valid_crop(valid, grid, 1, 1) is None  # nothing valid: skipped
    x0 = grid.col_origin(1)
    assert x0 == 80
    valid[20:100, x0 + 20 : x0 + 100] = True
    r0, r1, c0, c1 = valid_crop(valid, grid, 1, 1)
    assert all(v % 8 == 0 for v in (r0, r1, c0, c1))
    assert grid.crop_step == 16 and (r1 - r0) % 16 == 0 and (c1 - c0) % 16 == 0
    # 32 px in default tiles (an eighth of a small tile), on the pooling grid
    assert plan_tiles(2048, 2048, 512, 32, depth=3).crop_step == 32
    assert plan_tiles(2048, 2048, 512, 64, depth=5).crop_step == 32
    # rows and columns 20..99 valid, all weighted: 20 px of context would reach 0..120,
    # but past 8 px beyond the valid pixels (12..108: 8..112 on the 8 grid) there are
    # only invalid ones; sides rounded up to 16
    assert (r0, r1, c0, c1) == (8, 120, 8, 120)
    # a block alone in invalid pixels: 8 px past it, not 20
    valid[:, :] = False
    valid[50:60, x0 + 70 : x0 + 75] = True
    assert valid_crop(valid, grid, 1, 1) == (40, 72, 56, 88)
    # valid pixels in the tile's dead zone (weight 0), columns 0..5 of every row: the box
    # keeps the 20 px of context where they are (rows 16..80 and from column 8 on) and
    # stops 8 px past the valid pixels on the right (42 + 8 -> 56)
    valid[:, :] = False
    valid[:, x0 : x0 + 6] = True
    valid[40:60, x0 + 30 : x0 + 42] = True
    assert valid_crop(valid, grid, 1, 1) == (16, 80, 8, 56)
    valid[:, :] = False
    valid[110:118, x0 + 60 : x0 + 62] = True  # near the tile's bottom: the box stays inside
    valid[100:128, x0 + 56 : x0 + 70] = True
    assert valid_crop(valid, grid, 1, 1) == (80, 128, 48, 80)
    assert valid_crop(valid, grid, 1, 1, crop=False) == (0, 128, 0, 128)
    valid[:, :] = True
    assert valid_crop(valid, grid, 1, 1) == (0, 128, 0, 128)  # all valid: the whole tile
    valid[:, :] = False
    valid[2:6, x0 + 60] = True  # valid only in the dead zone (weight 0): skipped
    assert valid_crop(valid, grid, 1, 1) is None
    # the last tile row holds scene rows 272..307 (tile-local 0..35), all valid: the
    # mirrored rows below the scene's edge stay context (20 px: 36 + 20 -> 56 -> 64)
    assert grid.row_origin(3) == 272
    valid[:, :] = False
    valid[:36, :] = True
    assert valid_crop(valid, grid, 3, 1) == (0, 64, 0, 128)
    # the same rows in a taller scene whose pixels below them are invalid: 8 px (44 -> 48)
    taller = plan_tiles(600, 400, 128, 32, depth=3)
    assert valid_crop(valid, taller, 3, 1) == (0, 48, 0, 128)


def test_gdal_cache_holds_a_strips_input_blocks_and_a_block_row_of_each_output(tmp_path):
    path = tmp_path / "wide.tif"
    profile = dict(driver="GTiff", width=8000, height=300, count=4, dtype="uint16", crs=CRS)
    profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", transform=from_origin(500000, 5800000, 10, 10), **profile):
        pass  # only the layout matters
    grid = plan_tiles(300, 8000, 512, 32, depth=3)
    paths = dict.fromkeys(("output_probabilities", "output_map", "output_uncertainty"))
    paths["output"] = str(tmp_path / "classes.tif")
    with rasterio.open(path) as src:
        # a 512-row strip touches at most 3 block rows of 256 x 8000 x 4 bands x 2 bytes;
        # a block row (256 rows) of the class map, 1 byte a pixel; 16 MiB of slack
        classes = gdal_cache_bytes(src, grid, 4, "float32", paths)
        assert classes == 3 * 256 * 8000 * 4 * 2 + 256 * 8000 + 16 * 2**20
        paths["output_probabilities"] = str(tmp_path / "probabilities.tif")
        assert gdal_cache_bytes(src, grid, 4, "float32", paths) == classes + 256 * 8000 * 16
        assert gdal_cache_bytes(src, grid, 4, "uint8", paths) == classes + 256 * 8000 * 4
        paths["output_map"] = str(tmp_path / "map.tif")  # RGBA
        assert gdal_cache_bytes(src, grid, 4, "uint8", paths) == classes + 256 * 8000 * 8


def footprint_scene(rows, cols, bands=1, seed=13):
    """Smooth data inside a rotated rectangle, NaN outside (a satellite footprint)."""
    img = smooth_scene(np.random.default_rng(seed), bands, rows, cols)
    y = (np.arange(rows)[:, None] + 0.5) / rows - 0.5
    x = (np.arange(cols)[None, :] + 0.5) / cols - 0.5
    a = np.radians(15)
    inside = (np.abs(x * np.cos(a) + y * np.sin(a)) < 0.3) & (
        np.abs(-x * np.sin(a) + y * np.cos(a)) < 0.35
    )
    img[:, ~inside] = np.nan
    return img, inside


def test_cut_and_wide_tiles_give_the_whole_tile_result(
    tmp_path, unet_file, pointwise_file, monkeypatch
):
    """Tiles cut to their valid part, then merged into wide tiles, send fewer pixels
    through the model for the same result: exactly for a pointwise model, within what
    zero padding instead of zero input changes for a U-Net."""
    img, inside = footprint_scene(230, 260, bands=3)
    src = write_raster(tmp_path / "in.tif", img)
    sent = record_model_calls(monkeypatch)
    variants = {"whole": {"crop": False}, "cut": {"merge": False}, "wide": {}}
    results, probs, shapes = {}, {}, {}
    for name, model in (("unet", unet_file), ("point", pointwise_file)):
        scene = src if name == "unet" else write_raster(tmp_path / "one.tif", img[:1])
        for variant, switches in variants.items():
            key = (name, variant)
            sent.clear()
            results[key] = run_scene(
                model,
                scene,
                str(tmp_path / f"c{key}.tif"),
                str(tmp_path / f"p{key}.tif"),
                tile_size=64,
                probability_dtype="float32",
                **switches,
            )
            probs[key] = read(tmp_path / f"p{key}.tif")
            shapes[key] = list(sent)
    for name in ("unet", "point"):
        whole, cut, wide = (results[(name, v)] for v in variants)
        assert cut["tiles_predicted"] == whole["tiles_predicted"] == wide["tiles_predicted"]
        # measured 0.0819, 0.0616 and 0.0503 Mpx in 14 cut and 6 wide model calls
        assert cut["model_megapixels"] < 0.85 * whole["model_megapixels"]
        assert wide["model_megapixels"] < 0.9 * cut["model_megapixels"]
        assert wide["model_calls"] < cut["model_calls"]
        widest = {v: max(shape[2] for shape in shapes[(name, v)]) for v in ("cut", "wide")}
        assert widest["cut"] <= 64 < widest["wide"]
        assert cut["valid_pixels"] == whole["valid_pixels"] == int(inside.sum())
        assert wide["valid_pixels"] == whole["valid_pixels"]
        assert cut["class_pixel_counts"].keys() == whole["class_pixel_counts"].keys()
    for variant in ("cut", "wide"):
        # a pointwise model cannot tell: the same up to float32 rounding
        got = probs[("point", variant)]
        np.testing.assert_allclose(got, probs[("point", "whole")], rtol=0, atol=1e-6)
        # a U-Net sees zero padding instead of zero (invalid) input beyond the context
        a, b = probs[("unet", variant)][:, inside], probs[("unet", "whole")][:, inside]
        assert np.abs(a - b).max() < 0.05
        assert (a.argmax(0) == b.argmax(0)).mean() > 0.99


def test_tta_on_cropped_tiles_with_an_asymmetric_model(tmp_path, monkeypatch):
    """Cut tiles are not square: quarter turns swap their sides and must turn back."""
    path = save(shift_model(), tmp_path / "shift.keras", 2, depth=1)
    img, inside = footprint_scene(90, 140, seed=14)
    src = write_raster(tmp_path / "in.tif", img)
    x = np.where(inside, img[0], 0.0)  # invalid pixels are 0 at the model's input
    right, left, down, up = shift_expectations(x)
    expected = {1: right, 2: (right + left) / 2, 4: (right + left + up + down) / 4}
    sent = record_model_calls(monkeypatch)
    pixels = {}
    for tta, want in expected.items():
        sent.clear()
        result = predict_scene(
            path,
            src,
            str(tmp_path / f"c{tta}.tif"),
            str(tmp_path / f"p{tta}.tif"),
            tile_size=32,
            tta=tta,
            probability_dtype="float32",
        )
        assert any(shape[1] != shape[2] for shape in sent)  # some tiles were cut
        got = read(tmp_path / f"p{tta}.tif")[0][1:-1, 1:-1]
        keep = inside[1:-1, 1:-1]
        np.testing.assert_allclose(got[keep], want[keep], atol=2e-6, err_msg=f"TTA {tta}")
        pixels[tta] = (result["model_megapixels"], result["tiles_predicted"], list(sent))
    # TTA runs inside each model call on the same cut tiles: the work it multiplies is
    # that of the valid tiles only
    assert pixels[1] == pixels[2] == pixels[4]


class RowSink:
    """Collects the finished rows a ``Blender`` hands on (the outputs' side of it)."""

    def __init__(self):
        self.summed, self.weights = [], []

    def add(self, summed, weights, valid):
        self.summed.append(summed.copy())
        self.weights.append(weights.copy())

    def close(self):
        pass


class WindowedSums:
    """What a ``Blender`` (``self.blender``, handing rows on to ``self.sink``) must hand
    on, added up pixel by pixel over scene-sized arrays with each tile's own 2-D window."""

    def __init__(self, grid, n):
        self.grid = grid
        self.sink = RowSink()
        self.blender = Blender(grid, n, self.sink)
        w1 = weight_window_1d(grid.tile, grid.margin, grid.ramp)
        self.window = np.outer(w1, w1)
        self.sums = np.zeros((n, grid.height, grid.width))
        self.weights = np.zeros((grid.height, grid.width))

    def add(self, i, j, r0, c0, probs):
        """Add tile (i, j)'s probabilities (rows, cols, n) of the box at tile-local (r0, c0)."""
        g = self.grid
        for r in range(r0, r0 + probs.shape[0]):
            y = g.row_origin(i) + r
            for c in range(c0, c0 + probs.shape[1]):
                x = g.col_origin(j) + c
                if 0 <= y < g.height and 0 <= x < g.width:
                    self.sums[:, y, x] += self.window[r, c] * probs[r - r0, c - c0]
                    self.weights[y, x] += self.window[r, c]

    def check(self):
        """Finish the blender; its rows must be the sums and weights added up here."""
        self.blender.finish()
        summed = np.concatenate(self.sink.summed, axis=1)
        np.testing.assert_allclose(summed, self.sums, atol=1e-5)
        np.testing.assert_allclose(np.concatenate(self.sink.weights), self.weights, atol=1e-6)


@pytest.mark.parametrize(
    "tile,overlap,widest", [(64, 32, 1), (64, 0, 1), (96, 16, 1), (64, 16, 3), (96, 32, 3)]
)
def test_blender_sums_are_the_windowed_sums_of_whole_cut_and_wide_tiles(tile, overlap, widest):
    """Every pixel's sum and weight equal those added up tile by tile with the 2-D window
    over a scene-sized array, for whole tiles, tiles cut to random boxes and wide tiles of
    up to ``widest`` tiles (one model call: it must add what its tiles would add with the
    same probabilities, as neighbours' ramps sum to 1 inside it), although the blender
    copies where a tile is alone instead of adding."""
    grid = plan_tiles(150, 300, tile, overlap, depth=2)
    rng = np.random.default_rng(5)
    expected = WindowedSums(grid, 3)
    for i in range(grid.n_rows):
        expected.blender.set_valid(i, np.ones((tile, grid.width), bool))
        j = 0
        while j < grid.n_cols:
            k = min(int(rng.integers(1, widest + 1)), grid.n_cols - j)
            span = (k - 1) * grid.stride + tile
            r0, c0 = (int(v) for v in rng.integers(0, 3, 2) * 4)  # cut at the top left ...
            r1, c1 = (int(size - v * 4) for size, v in zip((tile, span), rng.integers(0, 3, 2)))
            probs = rng.random((r1 - r0, c1 - c0, 3)).astype(np.float32)
            expected.blender.add_batch([(i, j, r0, c0, k)], probs[None])
            for m in range(k):  # each tile of a wide one, with the tile's own window
                a, b = max(c0, m * grid.stride), min(c1, m * grid.stride + tile)
                expected.add(i, j + m, r0, a - m * grid.stride, probs[:, a - c0 : b - c0])
            j += k
    expected.check()
    g = grid
    assert (expected.weights[g.margin + g.ramp : -g.margin - g.ramp] > 0).all()


def test_merge_row_merges_neighbours_only_where_fewer_pixels_are_computed():
    grid = plan_tiles(100, 400, 64, 16, depth=2)
    assert grid.stride == 48
    whole = (0, 64, 0, 64)
    boxes = [whole, whole, whole, None, (0, 64, 0, 32), whole, (0, 32, 0, 64), (32, 64, 0, 64)]
    merged = merge_row(boxes, grid)
    assert merged == [
        (0, 3, (0, 64, 0, 2 * 48 + 64)),  # three whole tiles: their two overlaps once
        (4, 1, (0, 64, 0, 32)),  # ends before tile 5 begins (column 48): apart
        (5, 1, whole),
        (6, 1, (0, 32, 0, 64)),  # top half then bottom half: the box of both is twice
        (7, 1, (32, 64, 0, 64)),  # the pixels, so apart
    ]
    # the wide tile computes 2 overlaps of 16 columns x 64 rows fewer than its tiles apart
    assert 3 * 64 * 64 - 64 * 160 == 2 * 16 * 64
    # at most max_pixels in a wide tile: pairs, then what is left
    assert merge_row(boxes[:3], grid, max_pixels=64 * 112) == [
        (0, 2, (0, 64, 0, 112)),
        (2, 1, whole),
    ]
    # cut tiles whose boxes meet are merged when the union is no larger than the two
    meet = [(0, 64, 16, 64), (0, 64, 0, 40)]
    assert merge_row(meet, grid) == [(0, 2, (0, 64, 16, 48 + 40))]


# --------------------------------------------------------------------------- tiling


@pytest.mark.parametrize("tile,overlap", [(64, 32), (256, None)])
def test_tiled_equals_whole_scene_prediction(tmp_path, unet_file, tile, overlap):
    rng = np.random.default_rng(1)
    img = smooth_scene(rng, 3, 283, 131)  # > 256 rows: several strips and output flushes
    src = write_raster(tmp_path / "in.tif", img)
    loaded = load_model(unet_file)
    result = predict_scene(
        loaded,
        src,
        str(tmp_path / "c.tif"),
        str(tmp_path / "p.tif"),
        tile_size=tile,
        overlap=overlap,
        probability_dtype="float32",
    )
    x = np.moveaxis(img, 0, -1)
    padded = np.pad(x, ((0, 1), (0, 1), (0, 0)), mode="reflect")  # to a multiple of 2
    whole = np.asarray(loaded.keras_model(padded[None], training=False))[0, :283, :131]
    probs = np.moveaxis(read(tmp_path / "p.tif"), 0, -1)
    classes = read(tmp_path / "c.tif")[0]
    b = 16  # away from the scene edges (zero vs mirror padding)
    np.testing.assert_allclose(probs[b:-b, b:-b], whole[b:-b, b:-b], atol=1e-4)
    agree = classes[b:-b, b:-b] == whole[b:-b, b:-b].argmax(-1) + 1
    assert agree.mean() > 0.99
    assert result["tiles_total"] == result["tiles_predicted"] > (1 if tile == 64 else 0)
    assert result["valid_pixels"] == 283 * 131
    assert sum(result["class_pixel_counts"].values()) == 283 * 131


@pytest.mark.slow
def test_default_overlap_of_a_depth3_network_stays_close_to_the_whole_scene(tmp_path):
    """DEPTH 3 networks (the small MODEL_SIZE) get overlap 32, not 64: their blended tiles
    stay close to the whole scene run as one input, far closer than tiles without overlap."""
    import keras

    from wetland_unet_plugin.core.unet import build_unet

    keras.utils.set_random_seed(5)
    model = build_unet(3, 3, filters=4, depth=3, dropout=0.0)
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel * 5, bias])  # classes that vary over the scene
    loaded = load_model(save(model, tmp_path / "d3.keras", 3, depth=3))
    img = smooth_scene(np.random.default_rng(4), 3, 256, 256)
    src = write_raster(tmp_path / "in.tif", img)
    whole = np.asarray(loaded.keras_model(np.moveaxis(img, 0, -1)[None], training=False))[0]
    b = 32  # away from the scene edges (zero vs mirror padding)
    want = whole[b:-b, b:-b]
    assert (np.bincount(want.argmax(-1).ravel(), minlength=3) > 0).sum() >= 2
    error, agree = {}, {}
    for overlap in (None, 0):
        result = predict_scene(
            loaded,
            src,
            str(tmp_path / "c.tif"),
            str(tmp_path / "p.tif"),
            tile_size=128,
            overlap=overlap,
            probability_dtype="float32",
        )
        probs = np.moveaxis(read(tmp_path / "p.tif"), 0, -1)[b:-b, b:-b]
        error[result["overlap"]] = np.abs(probs - want).max()
        agree[result["overlap"]] = (probs.argmax(-1) == want.argmax(-1)).mean()
    assert set(error) == {32, 0}  # the default for DEPTH 3 is 32
    assert error[32] < 0.02 and error[32] < error[0] / 5
    assert agree[32] > 0.995 and agree[32] > agree[0]


def test_odd_scene_grid_identical_and_outputs_described(tmp_path, unet_file):
    img = smooth_scene(np.random.default_rng(2), 3, 157, 203)
    src = write_raster(tmp_path / "in.tif", img)
    out, prob, rgb = (str(tmp_path / n) for n in ("c.tif", "p.tif", "m.tif"))
    result = predict_scene(unet_file, src, out, prob, rgb, tile_size=64)
    assert result["output"] == out and result["tile_size"] == 64
    with rasterio.open(src) as a:
        for path in (out, prob, rgb):
            with rasterio.open(path) as b:
                assert (b.width, b.height, b.crs) == (a.width, a.height, a.crs)
                assert b.transform == a.transform
    with rasterio.open(out) as c:
        assert c.dtypes[0] == "uint8" and c.nodata == 0
        classes = c.read(1)
        assert classes.min() >= 1 and classes.max() <= 3
        assert c.colormap(1)[1][:3] == (0x1F, 0x78, 0xB4)
    with rasterio.open(prob) as p:
        assert p.count == 3 and p.descriptions == ("c1", "c2", "c3") and p.nodata == 255
        total = p.read().astype(int).sum(axis=0)
        assert np.abs(total - 254).max() <= 2  # probabilities sum to one
    with rasterio.open(rgb) as m:
        assert m.count == 4 and m.colorinterp[3].name == "alpha"
        assert (m.read(4) == 255).all()


# --------------------------------------------------------------------------- nodata


def test_nodata_and_nan_propagate_to_every_output(tmp_path, unet_file):
    img = smooth_scene(np.random.default_rng(3), 3, 120, 140)
    img[:, 10:30, 20:50] = np.nan  # NaN block
    img[1, 60:80, 70:100] = -1.0  # nodata on one band only
    src = write_raster(tmp_path / "in.tif", img, nodata=-1.0)
    for dtype, nodata in (("uint8", 255), ("float32", -1.0)):
        out, prob, rgb = (str(tmp_path / f"{dtype}{n}") for n in ("c.tif", "p.tif", "m.tif"))
        result = predict_scene(
            unet_file, src, out, prob, rgb, tile_size=64, probability_dtype=dtype
        )
        invalid = np.zeros((120, 140), bool)
        invalid[10:30, 20:50] = True
        invalid[60:80, 70:100] = True
        classes = read(out)[0]
        assert (classes[invalid] == 0).all() and (classes[~invalid] > 0).all()
        probs = read(prob)
        assert (probs[:, invalid] == nodata).all() and (probs[:, ~invalid] != nodata).all()
        alpha = read(rgb)[3]
        assert (alpha[invalid] == 0).all() and (alpha[~invalid] == 255).all()
        assert result["valid_pixels"] == int((~invalid).sum())


def test_all_zero_pixels_invalid_when_nodata_is_zero(tmp_path, pointwise_file):
    img = np.full((1, 40, 50), 700, np.uint16)
    img[0, 5:15, 5:15] = 0
    src = write_raster(tmp_path / "in.tif", img, nodata=0)
    predict_scene(pointwise_file, src, str(tmp_path / "c.tif"), tile_size=32)
    classes = read(tmp_path / "c.tif")[0]
    assert (classes[5:15, 5:15] == 0).all() and (classes > 0).sum() == 40 * 50 - 100


def test_tiles_without_valid_pixels_are_skipped(tmp_path, pointwise_file, monkeypatch):
    img = np.full((1, 200, 260), np.nan, np.float32)
    grid = plan_tiles(200, 260, 64, 16, depth=1)
    # one small valid block at the centre of tile (1, 2): inside that tile's core only
    cy = grid.row_origin(1) + 32
    cx = grid.col_origin(2) + 32
    img[0, cy - 2 : cy + 2, cx - 2 : cx + 2] = 0.7
    src = write_raster(tmp_path / "in.tif", img)
    sent = []
    real = inference_scene.get_predictor

    def counting(*args, **kwargs):
        predictor = real(*args, **kwargs)
        return lambda batch: sent.append(len(batch)) or predictor(batch)

    monkeypatch.setattr(inference_scene, "get_predictor", counting)
    result = predict_scene(pointwise_file, src, str(tmp_path / "c.tif"), tile_size=64, overlap=16)
    assert result["tiles_total"] == grid.tiles_total
    assert result["tiles_predicted"] == 1 == sum(sent)
    assert result["tiles_skipped"] == grid.tiles_total - 1
    classes = read(tmp_path / "c.tif")[0]
    assert (classes > 0).sum() == 16 == result["valid_pixels"]

    empty = write_raster(tmp_path / "empty.tif", np.full((1, 50, 60), np.nan, np.float32))
    fb = Recorder()
    result = predict_scene(
        pointwise_file, empty, str(tmp_path / "e.tif"), tile_size=32, feedback=fb
    )
    assert result["tiles_predicted"] == 0 and result["valid_pixels"] == 0
    assert (read(tmp_path / "e.tif") == 0).all()
    assert any("no valid pixel" in w for w in fb.warnings)


def test_numpy_huge_page_hint_is_off_while_predicting_and_restored(
    tmp_path, pointwise_file, monkeypatch
):
    """predict runs with numpy's huge-page hint off (fresh 2 MB pages zeroed per strip
    cost seconds of system time) and gives the previous setting back, after a failure
    too."""
    from wetland_unet_plugin.core.inference.pipeline import _hugepage_setter

    setter = _hugepage_setter()
    if setter is None:
        pytest.skip("this numpy has no huge-page switch")

    def state():
        previous = setter(False)
        setter(previous)
        return bool(previous)

    seen = []
    real = inference_scene.get_predictor

    def watching(*args, **kwargs):
        predictor = real(*args, **kwargs)
        return lambda batch: seen.append(state()) or predictor(batch)

    monkeypatch.setattr(inference_scene, "get_predictor", watching)
    src = write_raster(tmp_path / "in.tif", ramp_scene(40, 50))
    original = setter(True)
    try:
        predict_scene(pointwise_file, src, str(tmp_path / "c.tif"), tile_size=32, overlap=8)
        assert seen and not any(seen)
        assert state() is True

        def failing(*args, **kwargs):
            def predictor(batch):
                seen.append(state())
                raise RuntimeError("model failed")

            return predictor

        monkeypatch.setattr(inference_scene, "get_predictor", failing)
        setter(True)
        with pytest.raises(RuntimeError, match="model failed"):
            predict_scene(pointwise_file, src, str(tmp_path / "d.tif"), tile_size=32, overlap=8)
        assert seen[-1] is False and state() is True
    finally:
        setter(original)


# --------------------------------------------------------------------------- TTA


def ramp_scene(rows, cols):
    """A position-dependent band: every pixel a different value in 0..1."""
    return np.arange(rows * cols, dtype=np.float32).reshape(1, rows, cols) / (rows * cols)


@pytest.mark.parametrize("tta", [1, 2, 4, 8])
def test_tta_inverts_transforms_with_position_dependent_input(tmp_path, pointwise_file, tta):
    img = ramp_scene(70, 90)
    src = write_raster(tmp_path / "in.tif", img)
    predict_scene(
        pointwise_file,
        src,
        str(tmp_path / "c.tif"),
        str(tmp_path / "p.tif"),
        tile_size=32,
        tta=tta,
        probability_dtype="float32",
    )
    probs = read(tmp_path / "p.tif")
    expected = sigmoid(16.0 * (img[0] - 0.5))  # the pixel's own value: any misplacement shows
    np.testing.assert_allclose(probs[0], expected, atol=2e-6)


def test_tta_averages_transformed_predictions_of_an_asymmetric_model(tmp_path):
    path = save(shift_model(), tmp_path / "shift.keras", 2, depth=1)
    img = np.random.default_rng(4).random((1, 50, 60)).astype(np.float32)
    src = write_raster(tmp_path / "in.tif", img)
    x = img[0]
    right, left, down, up = shift_expectations(x)
    expected = {
        1: right,
        2: (right + left) / 2,
        4: (right + left + up + down) / 4,
        8: (right + left + up + down) / 4,
    }
    for tta, want in expected.items():
        predict_scene(
            path,
            src,
            str(tmp_path / f"c{tta}.tif"),
            str(tmp_path / f"p{tta}.tif"),
            tile_size=32,
            tta=tta,
            probability_dtype="float32",
        )
        got = read(tmp_path / f"p{tta}.tif")[0]
        np.testing.assert_allclose(got[1:-1, 1:-1], want, atol=2e-6, err_msg=f"TTA {tta}")


def test_portable_predictor_runs_whole_tiles_with_the_expected_tta(tmp_path, monkeypatch):
    """The Keras-ops predictor (the one JAX and PyTorch use), forced under TensorFlow."""
    path = save(shift_model(), tmp_path / "shift.keras", 2, depth=1)
    img, inside = footprint_scene(90, 140, seed=15)
    src = write_raster(tmp_path / "in.tif", img)
    x = np.where(inside, img[0], 0.0)
    right, left, down, up = shift_expectations(x)
    expected = {1: right, 2: (right + left) / 2, 8: (right + left + up + down) / 4}
    assert get_predictor(load_model(path), tta=8, portable=True).crop_tiles is False
    sent = record_model_calls(monkeypatch)
    for tta, want in expected.items():
        sent.clear()
        run_scene(
            path,
            src,
            str(tmp_path / f"c{tta}.tif"),
            str(tmp_path / f"p{tta}.tif"),
            tile_size=32,
            tta=tta,
            batch_size=3,
            probability_dtype="float32",
            portable=True,
        )
        assert {shape[1:3] for shape in sent} == {(32, 32)}  # whole tiles, never cut
        assert sent[-1][0] < 3  # a last, smaller batch (padded inside the predictor)
        got = read(tmp_path / f"p{tta}.tif")[0][1:-1, 1:-1]
        keep = inside[1:-1, 1:-1]
        np.testing.assert_allclose(got[keep], want[keep], atol=2e-6, err_msg=f"TTA {tta}")


# --------------------------------------------------------------------------- bands, checks


def test_band_selection_matches_scene_of_those_bands(tmp_path):
    import keras

    from wetland_unet_plugin.core.unet import build_unet

    keras.utils.set_random_seed(5)
    net = build_unet(2, 2, filters=4, depth=1, dropout=0.0)
    picked = save(
        net, tmp_path / "b24.keras", 2, depth=1, bands=[2, 4], n_bands=4, low=100.0, high=900.0
    )
    plain = save(net, tmp_path / "plain.keras", 2, depth=1, low=100.0, high=900.0)
    rng = np.random.default_rng(6)
    four = (rng.random((4, 90, 70)) * 1000).astype(np.uint16)
    src4 = write_raster(tmp_path / "four.tif", four)
    src2 = write_raster(tmp_path / "two.tif", four[[1, 3]])
    predict_scene(
        picked,
        src4,
        str(tmp_path / "a.tif"),
        str(tmp_path / "pa.tif"),
        tile_size=32,
        probability_dtype="float32",
    )
    predict_scene(
        plain,
        src2,
        str(tmp_path / "b.tif"),
        str(tmp_path / "pb.tif"),
        tile_size=32,
        probability_dtype="float32",
    )
    np.testing.assert_array_equal(read(tmp_path / "a.tif"), read(tmp_path / "b.tif"))
    np.testing.assert_array_equal(read(tmp_path / "pa.tif"), read(tmp_path / "pb.tif"))


def test_input_errors_are_reported_before_any_output(tmp_path, unet_file):
    from wetland_unet_plugin.core.unet import build_unet

    four = write_raster(tmp_path / "four.tif", np.ones((4, 40, 40), np.float32))
    net = build_unet(4, 2, filters=4, depth=1, dropout=0.0)
    needs7 = save(net, tmp_path / "b1237.keras", 2, depth=1, bands=[1, 2, 3, 7], n_bands=8)
    out = tmp_path / "c.tif"
    with pytest.raises(CoreError, match=r"bands \[1, 2, 3, 7\].*4 band"):
        predict_scene(needs7, four, str(out))
    with pytest.raises(CoreError, match="takes 3 band"):
        predict_scene(unet_file, four, str(out))
    three = write_raster(tmp_path / "three.tif", np.ones((3, 40, 40), np.float32))
    with pytest.raises(CoreError, match="not a multiple of 2"):
        predict_scene(unet_file, three, str(out), tile_size=33)
    with pytest.raises(CoreError, match="too small"):
        predict_scene(unet_file, three, str(out), tile_size=8)
    with pytest.raises(CoreError, match="also an input"):
        predict_scene(unet_file, three, three)
    with pytest.raises(CoreError, match="does not exist"):
        predict_scene(unet_file, three, str(tmp_path / "no" / "c.tif"))
    with pytest.raises(CoreError, match="TTA"):
        predict_scene(unet_file, three, str(out), tta=3)
    with pytest.raises(CoreError, match="same file"):
        predict_scene(unet_file, three, str(out), output_map=str(out))
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["b1237.keras", "four.tif", "three.tif"]


def test_not_enough_disk_space_is_refused(tmp_path, pointwise_file, monkeypatch):
    import shutil

    src = write_raster(tmp_path / "in.tif", ramp_scene(40, 40))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 10))
    with pytest.raises(CoreError, match="Not enough disk space"):
        predict_scene(pointwise_file, src, str(tmp_path / "c.tif"), tile_size=32)
    assert sorted(os.listdir(tmp_path)) == ["in.tif"]


def test_pixel_size_or_crs_units_far_from_training_warn(tmp_path, pointwise_file):
    src = write_raster(tmp_path / "in.tif", ramp_scene(40, 40), res=30.0)
    fb = Recorder()
    predict_scene(pointwise_file, src, str(tmp_path / "c.tif"), tile_size=32, feedback=fb)
    assert any("pixel size" in w for w in fb.warnings)
    assert fb.fractions and fb.fractions[-1] == 1.0
    geographic = write_raster(tmp_path / "geo.tif", ramp_scene(40, 40), res=0.0001, crs="EPSG:4326")
    fb = Recorder()
    predict_scene(pointwise_file, geographic, str(tmp_path / "g.tif"), tile_size=32, feedback=fb)
    assert any("degree" in w and "metre" in w for w in fb.warnings)


# --------------------------------------------------------------------------- cancel, cache


def test_cancel_mid_run_leaves_no_output(tmp_path, unet_file):
    src = write_raster(tmp_path / "in.tif", smooth_scene(np.random.default_rng(7), 3, 200, 200))
    outs = [str(tmp_path / n) for n in ("c.tif", "p.tif", "m.tif")]
    fb = CancelAfter(3)
    with pytest.raises(Canceled):
        predict_scene(unet_file, src, *outs, tile_size=32, batch_size=2, feedback=fb)
    assert fb.calls > 3
    assert sorted(os.listdir(tmp_path)) == ["in.tif"]


def test_model_cache_loads_once_for_a_batch_of_scenes(tmp_path, pointwise_file):
    clear_model_cache()
    src = write_raster(tmp_path / "in.tif", ramp_scene(40, 40))
    for name in ("a.tif", "b.tif"):
        predict_scene(pointwise_file, src, str(tmp_path / name), tile_size=32)
    assert model_cache_info()["loads"] == 1
    assert get_cached_model(pointwise_file) is get_cached_model(pointwise_file)
    stat = os.stat(pointwise_file)
    os.utime(pointwise_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten
    get_cached_model(pointwise_file)
    assert model_cache_info()["loads"] == 2


def test_mixed_precision_close_to_float32(tmp_path, unet_file):
    src = write_raster(tmp_path / "in.tif", smooth_scene(np.random.default_rng(8), 3, 64, 64))
    predict_scene(
        unet_file,
        src,
        str(tmp_path / "a.tif"),
        str(tmp_path / "pa.tif"),
        tile_size=32,
        probability_dtype="float32",
    )
    predict_scene(
        unet_file,
        src,
        str(tmp_path / "b.tif"),
        str(tmp_path / "pb.tif"),
        tile_size=32,
        probability_dtype="float32",
        precision="mixed_bfloat16",
    )
    a, b = read(tmp_path / "pa.tif"), read(tmp_path / "pb.tif")
    assert np.abs(a - b).mean() < 0.05
    assert (read(tmp_path / "a.tif") == read(tmp_path / "b.tif")).mean() > 0.9
