"""Tiled, overlapping, blended prediction of a scene, streamed to disk.

How a scene is predicted
------------------------
The scene is cut into square tiles of ``tile_size`` pixels that overlap their
neighbours by ``overlap`` pixels (the stride is ``tile_size - overlap``, a
multiple of ``2**depth`` so every tile sees the same pooling grid). Each tile's
class probabilities are weighted by a separable window and summed; the sum is
divided by the summed weights. The 1-D window over a tile of ``T`` pixels is

* ``0`` in a *dead zone* of ``margin = 3 * overlap // 8`` pixels at each edge
  (those pixels lack context, so they never count),
* a linear ramp over the next ``ramp = overlap - 2 * margin`` pixels,
* ``1`` in the centre.

The ramps of two neighbouring tiles sum to exactly 1 over their overlap, so
where the model agrees with itself the blend is the plain prediction, and where
it does not the transition is smooth: no seams. The scene is mirror-padded
(reflect) by ``pad = margin`` rounded up to a multiple of ``2**depth`` so
edge pixels get context as well.

Memory does not grow with the scene's height and only linearly with its width:
the scene is read one *strip* (one row of tiles, ``tile_size`` rows) at a time,
probabilities are accumulated in a strip buffer of ``tile_size`` rows, rows that
no later tile can touch are written (in whole 256-row GeoTIFF block rows), and
the buffer slides down by the stride. GDAL's block cache is bounded to what one
strip needs while predicting (``gdal_cache_bytes``). A reader thread reads and
validates strips, normalises tiles and fills batches of tiles of one shape
(whole tiles first, so their batches span tile rows and are full) while the
model runs; a writer thread blends and writes; the calling thread only runs the
model, checks cancel and reports progress between batches.

Invalid pixels (NaN/Inf, the band's nodata value on any of the model's bands,
or masked by the raster's mask/alpha band) are 0 at the model's input and
nodata in every output. What need not be computed is not:

* tiles whose weighted part holds no valid pixel are never sent to the model;
* a tile whose valid pixels fill only part of it (a rotated satellite footprint,
  a cloud mask) is cut to their bounding box plus context (``valid_crop``);
* the model runs as its inference graph: batch normalisation folded into the
  convolutions, convolution + bias + ReLU fused, dropout removed
  (``inference_function``), checked against the Keras model once per model;
* every TTA transform runs on the same cut tiles, so TTA work scales with the
  valid part of the scene only.

The defaults (tiles of at least 512 pixels, overlap at most 64) keep the pixels
computed twice in overlaps at (512 / 448)**2 = 1.31 times the tiled area.

Outputs (tiled deflate GeoTIFF on the input's grid, written through
``atomic_output`` so a cancel or failure leaves nothing at the destinations):

* OUTPUT: uint8 class ids 1..N (argmax + 1), nodata 0, with a colour table;
* OUTPUT_PROBABILITIES: one band per class, described by the class name;
  ``uint8``: round(p * 254), nodata 255, band scale 1/254 so GDAL/QGIS can show
  0..1; ``float32``: p in 0..1, nodata -1;
* OUTPUT_MAP: RGBA uint8 picture in the class colours, alpha 0 where nodata.

Precision: ``"mixed_float16"`` / ``"mixed_bfloat16"`` rebuild the model from its
configuration under that Keras dtype policy (the output layer stays float32)
and copy the weights; the original model is left untouched.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
from collections import OrderedDict
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from . import raster as rasterlib
from .atomic import atomic_output
from .classes import default_colors, hex_to_rgb
from .feedback import Canceled, CoreError, Feedback
from .modelfile import LoadedModel, load_model
from .normalize import check_finite, normalize
from .unet import receptive_margin, tile_multiple

#: Dihedral transforms averaged for each TTA setting (see ``dihedral_forward``).
TTA_TRANSFORMS = {1: (0,), 2: (0, 4), 4: (0, 1, 2, 3), 8: tuple(range(8))}
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
PROBABILITY_DTYPES = ("uint8", "float32")
#: Nodata values of the outputs.
CLASS_NODATA = 0
PROB_NODATA = {"uint8": 255, "float32": -1.0}
#: uint8 probabilities are round(p * PROB_SCALE_UINT8).
PROB_SCALE_UINT8 = 254
#: Smallest tile we accept, whatever the depth.
MIN_TILE = 16
#: Default tile size when the model's patch is smaller. Larger tiles cut the share of
#: pixels computed twice in overlaps: (512 / 448)**2 = 1.31 at the default overlap of 64,
#: against (256 / 192)**2 = 1.78 at 256 (see benchmarks/README.md).
DEFAULT_MIN_TILE = 512
#: Upper bound of the default overlap. The dead zone (3/8 of the overlap) and the ramp are
#: measured from a tile's edge, so the context a pixel near an edge gets does not depend
#: on the tile size: the overlap that served 256-pixel tiles serves larger ones as well.
MAX_DEFAULT_OVERLAP = 64
#: Send only the part of a tile around its valid pixels to the model (see ``valid_crop``).
CROP_TO_VALID = True
#: Run the inference graph with batch normalisation folded into the convolutions and
#: dropout removed (see ``inference_function``); False runs the Keras model as it is.
FOLD_INFERENCE = True
#: On a CPU a batch is run in model calls of at most this many pixels (but at least two
#: tiles): as fast per pixel as one call (measured: 4 x 512**2 in one call or in two),
#: with half the activations in memory. On a GPU the batch is one call.
CPU_CALL_PIXELS = 2 * 512 * 512
#: Run the model through ``_portable_predictor`` (Keras ops, any backend) even under
#: TensorFlow; it is always used under the JAX and PyTorch backends.
PORTABLE_PREDICTOR = False
#: How many loaded models the cache keeps.
CACHE_SIZE = 2
#: Bounds of the GDAL block cache while predicting (see ``gdal_cache_bytes``).
GDAL_CACHE_MIN = 32 * 1024 * 1024
GDAL_CACHE_MAX = 512 * 1024 * 1024

# --------------------------------------------------------------------------- model cache

_CACHE: "OrderedDict[tuple, LoadedModel]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_STATS = {"loads": 0, "hits": 0}


def _cache_key(path: str) -> tuple:
    real = os.path.realpath(path)
    try:
        stat = os.stat(real)
    except OSError:
        raise CoreError(f"Model file not found: {path}. Choose a .keras file written by "
                        "wetlandunet:train.") from None
    return real, stat.st_mtime_ns, stat.st_size


def get_cached_model(path: str) -> LoadedModel:
    """Load a model file once per process; later calls return the same object.

    The cache is keyed by (real path, modification time, size), so a model file
    that is rewritten is loaded again. At most ``CACHE_SIZE`` models are kept.

    Args:
        path: a ``.keras`` model file written by wetlandunet:train.

    Returns:
        The ``LoadedModel``.
    """
    key = _cache_key(path)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            _CACHE_STATS["hits"] += 1
            return _CACHE[key]
    loaded = load_model(path)
    with _CACHE_LOCK:
        _CACHE_STATS["loads"] += 1
        _CACHE[key] = loaded
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return loaded


def model_cache_info() -> dict:
    """Return ``{"loads": n, "hits": n, "entries": n}`` of the model cache."""
    with _CACHE_LOCK:
        return dict(_CACHE_STATS, entries=len(_CACHE))


def clear_model_cache() -> None:
    """Forget every cached model and reset the counters."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _CACHE_STATS.update(loads=0, hits=0)


def _resolve_model(model) -> LoadedModel:
    if isinstance(model, (str, os.PathLike)):
        return get_cached_model(os.fspath(model))
    if hasattr(model, "keras_model") and hasattr(model, "metadata"):
        return model
    raise CoreError("MODEL must be a model file path or a loaded model.")


# --------------------------------------------------------------------------- model spec

@dataclass
class ModelSpec:
    """What prediction needs to know about a model, read from its metadata."""

    class_names: list
    class_colors: list
    n_classes: int
    bands: list | None  # 1-based input bands, in model order; None = all
    n_channels: int     # channels the Keras model takes
    depth: int
    patch_size: int
    normalization: dict
    pixel_size: list | None
    crs_wkt: str | None


def _count_pools(keras_model) -> int:
    return sum(1 for layer in getattr(keras_model, "layers", [])
               if "Pooling2D" in type(layer).__name__)


def model_spec(loaded: LoadedModel, feedback: Feedback | None = None) -> ModelSpec:
    """Read a model's metadata (and Keras input shape) into a ``ModelSpec``.

    Args:
        loaded: the loaded model.
        feedback: where to warn about missing metadata.

    Returns:
        The ``ModelSpec``.
    """
    feedback = feedback or Feedback()
    meta = loaded.metadata or {}
    keras_model = loaded.keras_model
    n_channels = None
    try:
        n_channels = int(keras_model.inputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    bands = meta.get("bands")
    bands = [int(b) for b in bands] if bands else None
    if n_channels is None:
        n_channels = len(bands) if bands else int(meta.get("n_input_bands") or 0)
    n_classes = int(meta.get("n_classes") or 0)
    if not n_classes:
        try:
            n_classes = int(keras_model.outputs[0].shape[-1])
        except (AttributeError, IndexError, TypeError, ValueError):
            raise CoreError("The model file does not say how many classes it has; "
                            "train it again with wetlandunet:train.") from None
    names = list(meta.get("class_names") or [f"class {i + 1}" for i in range(n_classes)])
    colors = list(meta.get("class_colors") or default_colors(names))
    depth = meta.get("depth")
    depth = int(depth) if depth is not None else _count_pools(keras_model)
    stats = meta.get("normalization")
    if not stats or "low" not in stats or "high" not in stats:
        feedback.warning("The model carries no normalisation statistics; the input is "
                         "used unscaled (0..1 assumed).")
        stats = {"low": [0.0] * n_channels, "high": [1.0] * n_channels}
    if len(stats["low"]) != n_channels:
        raise CoreError(f"The model's normalisation covers {len(stats['low'])} bands but "
                        f"the network takes {n_channels}; the model file is inconsistent. "
                        "Train it again.")
    return ModelSpec(class_names=names, class_colors=colors, n_classes=n_classes, bands=bands,
                     n_channels=n_channels, depth=depth,
                     patch_size=int(meta.get("patch_size") or 0), normalization=stats,
                     pixel_size=meta.get("pixel_size"), crs_wkt=meta.get("crs"))


# --------------------------------------------------------------------------- dihedral TTA

def dihedral_forward(array: np.ndarray, k: int) -> np.ndarray:
    """Apply dihedral transform ``k`` (0..7) to the spatial axes of an array.

    Transform k flips the columns when ``k >= 4``, then rotates by ``k % 4``
    quarter turns (``np.rot90`` sense). Transform 0 is the identity.

    Args:
        array: (..., rows, cols, channels).
        k: 0..7.

    Returns:
        The transformed array (a view where possible).
    """
    axes = (array.ndim - 3, array.ndim - 2)
    if k >= 4:
        array = np.flip(array, axis=axes[1])
    return np.rot90(array, k % 4, axes=axes)


def dihedral_inverse(array: np.ndarray, k: int) -> np.ndarray:
    """Undo ``dihedral_forward(., k)``: ``dihedral_inverse(dihedral_forward(x, k), k) == x``.

    Args:
        array: (..., rows, cols, channels).
        k: 0..7.
    """
    axes = (array.ndim - 3, array.ndim - 2)
    array = np.rot90(array, -(k % 4), axes=axes)
    if k >= 4:
        array = np.flip(array, axis=axes[1])
    return array


def _tf_forward(x, k: int):
    import tensorflow as tf

    if k >= 4:
        x = tf.reverse(x, axis=[2])
    return tf.image.rot90(x, k % 4) if k % 4 else x


def _tf_inverse(y, k: int):
    import tensorflow as tf

    if k % 4:
        y = tf.image.rot90(y, (4 - k % 4) % 4)
    if k >= 4:
        y = tf.reverse(y, axis=[2])
    return y


def tta_transforms(tta: int) -> tuple:
    """Return the dihedral transforms averaged for a TTA setting (1, 2, 4 or 8).

    Raises:
        CoreError: for any other value.
    """
    try:
        return TTA_TRANSFORMS[int(tta)]
    except (KeyError, TypeError, ValueError):
        raise CoreError(f"TTA must be 1, 2, 4 or 8 (dihedral transforms averaged); got "
                        f"{tta!r}.") from None


# --------------------------------------------------------------------------- compiled model

def cast_model(keras_model, precision: str):
    """Return the model rebuilt under a Keras mixed-precision policy (or itself for float32).

    Every layer except the inputs and the output layers takes the policy; the
    weights are copied. The original model is not modified.

    Args:
        keras_model: a functional Keras model.
        precision: "float32", "mixed_float16" or "mixed_bfloat16".
    """
    if precision == "float32":
        return keras_model
    import keras

    config = keras_model.get_config()
    outputs = config.get("output_layers") or []
    if outputs and isinstance(outputs[0], str):
        outputs = [outputs]
    keep = {entry[0] for entry in outputs}
    for layer in config.get("layers", []):
        if layer.get("class_name") == "InputLayer" or layer.get("config", {}).get("name") in keep:
            continue
        layer["config"]["dtype"] = precision
    try:
        clone = keras.Model.from_config(config)
        clone.set_weights(keras_model.get_weights())
    except Exception as err:  # Keras raises many types for configs it cannot rebuild
        raise CoreError(f"The model cannot be rebuilt for precision {precision} ({err}); "
                        "use PRECISION float32.") from None
    return clone


# --------------------------------------------------------------------------- inference graph

#: Layers that are the identity at inference time.
_INFERENCE_IDENTITY = frozenset({"Dropout", "SpatialDropout1D", "SpatialDropout2D",
                                 "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
                                 "AlphaDropout", "ActivityRegularization"})


class _Unsupported(Exception):
    """The model's graph has a shape ``inference_function`` does not handle."""


def _tensor_refs(obj, found: list) -> list:
    """Collect the ``keras_history`` of every tensor reference in a node's config."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            found.append(tuple(obj["config"]["keras_history"]))
        else:
            for value in obj.values():
                _tensor_refs(value, found)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _tensor_refs(value, found)
    return found


def _one_ref(entry) -> str:
    """Layer name of an ``input_layers`` / ``output_layers`` config entry (exactly one)."""
    if entry and isinstance(entry[0], (list, tuple)):
        if len(entry) != 1:
            raise _Unsupported("several inputs or outputs")
        entry = entry[0]
    if tuple(entry[1:3]) != (0, 0):
        raise _Unsupported("shared layer")
    return entry[0]


def inference_function(keras_model):
    """Return ``f(x) -> probabilities``: the model's inference graph, leaner than the model.

    Walks the functional model's configuration once and

    * folds every BatchNormalization that directly follows a Conv2D (and feeds
      nothing else) into that convolution's kernel and bias:
      ``k' = k * g / sqrt(v + eps)``, ``b' = (b - m) * g / sqrt(v + eps) + beta``;
    * runs such convolutions (and a ReLU right after them) as one
      ``conv2d + bias_add + relu``, which TensorFlow fuses into one kernel
      (oneDNN on CPU, cuDNN on GPU), instead of a convolution and three
      element-wise passes over the activations;
    * drops layers that are the identity at inference (dropout, noise).

    Every other layer is called as it is (so mixed-precision policies still apply;
    a folded convolution computes in its layer's compute dtype). Weights are read
    once, now: rebuild the function if the weights change.

    Args:
        keras_model: a functional Keras model with one input and one output.

    Returns:
        ``(forward, info)``: ``forward(x)`` for (B, rows, cols, channels) tensors
        (usable inside ``tf.function``), ``info`` a dict with ``folded`` (batch
        normalisations folded), ``fused`` (convolutions fused) and ``dropped``
        (identity layers removed). None when the graph has a layer shared between
        calls, several inputs/outputs, or is not functional; use the model then.
    """
    try:
        return _build_inference(keras_model)
    except (_Unsupported, KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


def _build_inference(keras_model):
    import tensorflow as tf

    config = keras_model.get_config()
    if not isinstance(config, dict) or "layers" not in config:
        raise _Unsupported("not a functional model")
    layers = config["layers"]
    input_name = _one_ref(config["input_layers"])
    output_name = _one_ref(config["output_layers"])
    by_name = {layer["name"]: layer for layer in layers}
    inputs_of: dict = {}
    consumers: dict = {}
    for layer in layers:
        nodes = layer.get("inbound_nodes") or []
        if layer["class_name"] == "InputLayer":
            continue
        if len(nodes) != 1 or _tensor_refs(nodes[0].get("kwargs", {}), []):
            raise _Unsupported(f"layer {layer['name']} called more than once")
        refs = _tensor_refs(nodes[0].get("args", []), [])
        if any(tuple(ref[1:3]) != (0, 0) for ref in refs):
            raise _Unsupported("shared layer")
        inputs_of[layer["name"]] = [ref[0] for ref in refs]
        for ref in refs:
            consumers.setdefault(ref[0], []).append(layer["name"])

    def only_consumer(name, class_name):
        users = consumers.get(name, [])
        if len(users) == 1 and name != output_name and \
                by_name[users[0]]["class_name"] == class_name:
            return users[0]
        return None

    alias: dict = {}     # layer whose output is another layer's output -> that layer
    fused: dict = {}     # Conv2D name -> (kernel, bias, strides, padding, dilations, relu, dtype)
    folded = dropped = 0
    for layer in layers:
        name, cfg = layer["name"], layer["config"]
        if layer["class_name"] in _INFERENCE_IDENTITY:
            if len(inputs_of[name]) != 1:
                raise _Unsupported("identity layer with several inputs")
            alias[name] = inputs_of[name][0]
            dropped += 1
            continue
        if layer["class_name"] != "Conv2D" or cfg.get("data_format", "channels_last") != \
                "channels_last" or int(cfg.get("groups", 1)) != 1 or \
                cfg.get("activation") not in ("linear", "relu"):
            continue
        conv = keras_model.get_layer(name)
        weights = conv.get_weights()
        kernel = weights[0].astype(np.float64)
        bias = weights[1].astype(np.float64) if cfg.get("use_bias") else \
            np.zeros(kernel.shape[-1])
        last = name
        relu = cfg["activation"] == "relu"
        bn_name = None if relu else only_consumer(name, "BatchNormalization")
        if bn_name is not None:
            bn = keras_model.get_layer(bn_name)
            axis = by_name[bn_name]["config"].get("axis")
            axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
            if axis in (-1, 3) and len(inputs_of[bn_name]) == 1:
                def value(var, default):
                    return default if var is None else np.asarray(
                        _to_numpy(var), dtype=np.float64)
                gamma = value(getattr(bn, "gamma", None), np.ones_like(bias))
                beta = value(getattr(bn, "beta", None), np.zeros_like(bias))
                mean = value(bn.moving_mean, None)
                variance = value(bn.moving_variance, None)
                scale = gamma / np.sqrt(variance + float(bn.epsilon))
                kernel = kernel * scale
                bias = (bias - mean) * scale + beta
                alias[bn_name] = name
                last = bn_name
                folded += 1
        if not relu:
            act = only_consumer(last, "Activation")
            if act is not None and by_name[act]["config"].get("activation") == "relu":
                alias[act] = name
                relu = True
        dtype = tf.as_dtype(conv.compute_dtype)
        strides = list(cfg.get("strides", (1, 1)))
        dilations = list(cfg.get("dilation_rate", (1, 1)))
        fused[name] = (tf.constant(kernel, dtype=dtype), tf.constant(bias, dtype=dtype),
                       strides, str(cfg.get("padding", "valid")).upper(), dilations, relu,
                       dtype)

    def resolve(name):
        while name in alias:
            name = alias[name]
        return name

    steps = []
    for layer in layers:
        name = layer["name"]
        if layer["class_name"] == "InputLayer" or name in alias:
            continue
        args = layer["inbound_nodes"][0].get("args", [])
        kwargs = layer["inbound_nodes"][0].get("kwargs", {})
        steps.append((name, args, kwargs, fused.get(name),
                      None if name in fused else keras_model.get_layer(name)))
    if resolve(input_name) != input_name:
        raise _Unsupported("input aliased")

    def substitute(obj, values):
        if isinstance(obj, dict) and obj.get("class_name") == "__keras_tensor__":
            return values[resolve(obj["config"]["keras_history"][0])]
        if isinstance(obj, (list, tuple)):
            return [substitute(item, values) for item in obj]
        return obj

    def forward(x):
        values = {input_name: x}
        for name, args, kwargs, conv, layer in steps:
            args = substitute(args, values)
            if conv is not None:
                kernel, bias, strides, padding, dilations, relu, dtype = conv
                y = tf.nn.conv2d(tf.cast(args[0], dtype), kernel, strides=strides,
                                 padding=padding, dilations=dilations)
                y = tf.nn.bias_add(y, bias)
                values[name] = tf.nn.relu(y) if relu else y
            else:
                values[name] = layer(*args, **kwargs, training=False)
        return values[resolve(output_name)]

    info = {"folded": folded, "fused": len(fused), "dropped": dropped}
    return forward, info


def _to_numpy(variable) -> np.ndarray:
    """A Keras variable's value as numpy (eager)."""
    import keras

    return keras.ops.convert_to_numpy(variable)


def _inference_forward(loaded: LoadedModel, keras_model):
    """The model's forward function for prediction: folded graph when it checks out."""
    if not FOLD_INFERENCE:
        return lambda x: keras_model(x, training=False)
    checked = loaded.__dict__.setdefault("_wetland_inference_checked", {})
    key = id(loaded.keras_model)
    if key not in checked:
        checked[key] = _check_inference(loaded.keras_model)
    if checked[key]:
        built = inference_function(keras_model)
        if built is not None:
            return built[0]
    return lambda x: keras_model(x, training=False)


def _check_inference(keras_model) -> bool:
    """True when the float32 inference graph reproduces the model on a small input."""
    built = inference_function(keras_model)
    if built is None:
        return False
    forward, _ = built
    size = 2 * tile_multiple(_count_pools(keras_model) or 1)
    size = max(size, 32)
    try:
        channels = int(keras_model.inputs[0].shape[-1])
        x = np.random.default_rng(0).random((1, size, size, channels), dtype=np.float32)
        want = np.asarray(keras_model(x, training=False), dtype=np.float64)
        got = np.asarray(forward(x), dtype=np.float64)
    except Exception:  # any failure here only means: run the model as it is
        return False
    return want.shape == got.shape and bool(np.allclose(got, want, rtol=1e-3, atol=1e-4))


def get_predictor(loaded: LoadedModel, tta: int = 1, precision: str = "float32"):
    """Return a compiled function ``f(batch) -> probabilities`` for a model, cached on it.

    ``batch`` is (B, rows, cols, channels) float32, rows and cols multiples of
    2**depth (not necessarily equal: quarter turns swap them and turn back); the
    result is (B, rows, cols, classes) float32 numpy, averaged over the TTA
    transforms in probability space. With ``FOLD_INFERENCE`` the model runs as
    its inference graph (``inference_function``), checked against the Keras
    model once on a small input; any model it cannot handle runs as it is.

    Args:
        loaded: the loaded model.
        tta: 1, 2, 4 or 8.
        precision: one of ``PRECISIONS``.
    """
    transforms = tta_transforms(tta)
    store = loaded.__dict__.setdefault("_wetland_predictors", {})
    import keras

    portable = PORTABLE_PREDICTOR or keras.backend.backend() != "tensorflow"
    key = (precision, transforms, bool(FOLD_INFERENCE), portable)
    if key in store:
        return store[key]
    models = loaded.__dict__.setdefault("_wetland_cast_models", {})
    if precision not in models:
        models[precision] = cast_model(loaded.keras_model, precision)
    keras_model = models[precision]
    if portable:
        store[key] = _portable_predictor(keras_model, transforms)
        return store[key]
    import tensorflow as tf

    channels = int(keras_model.inputs[0].shape[-1])
    forward = _inference_forward(loaded, keras_model)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)],
                 reduce_retracing=True, autograph=False)
    def run(x):
        total = None
        for k in transforms:
            y = tf.cast(forward(_tf_forward(x, k)), tf.float32)
            y = _tf_inverse(y, k)
            total = y if total is None else total + y
        if len(transforms) > 1:
            total = total / float(len(transforms))
        return total

    on_cpu = not tf.config.list_logical_devices("GPU")

    def predictor(batch: np.ndarray) -> np.ndarray:
        n, rows, cols = batch.shape[:3]
        step = max(2, CPU_CALL_PIXELS // max(rows * cols, 1)) if on_cpu else n
        if step >= n:
            return run(tf.convert_to_tensor(batch, dtype=tf.float32)).numpy()
        return np.concatenate([run(tf.convert_to_tensor(batch[a:a + step], dtype=tf.float32))
                               .numpy() for a in range(0, n, step)])

    predictor.crop_tiles = True
    store[key] = predictor
    return predictor


def _ops_forward(x, k: int):
    """``dihedral_forward`` on a (B, rows, cols, C) tensor, in Keras ops (any backend)."""
    from keras import ops

    if k >= 4:
        x = ops.flip(x, axis=2)
    return ops.rot90(x, k % 4, axes=(1, 2)) if k % 4 else x


def _ops_inverse(y, k: int):
    """``dihedral_inverse`` on a (B, rows, cols, C) tensor, in Keras ops (any backend)."""
    from keras import ops

    if k % 4:
        y = ops.rot90(y, (4 - k % 4) % 4, axes=(1, 2))
    if k >= 4:
        y = ops.flip(y, axis=2)
    return y


def _portable_predictor(keras_model, transforms: tuple):
    """The predictor on any Keras backend (JAX, PyTorch, TensorFlow).

    The TTA transforms are Keras ops and the model runs as it is (no folded
    graph). Under JAX the whole TTA pass is one ``jax.jit`` program taking the
    weights as arguments (``stateless_call``); XLA compiles one program per input
    shape, so every batch is padded to the largest batch seen for its tile shape
    and tiles are not cut to their valid part (``crop_tiles`` False): a scene
    costs one or two compilations. Other backends run eagerly, without gradients.

    Args:
        keras_model: the (possibly cast) Keras model.
        transforms: dihedral transforms to average.

    Returns:
        ``f(batch) -> probabilities`` as ``get_predictor``, with ``crop_tiles``.
    """
    import keras
    from keras import ops

    backend = keras.backend.backend()

    def tta_pass(call, x):
        total = None
        for k in transforms:
            y = _ops_inverse(ops.cast(call(_ops_forward(x, k)), "float32"), k)
            total = y if total is None else total + y
        return total / float(len(transforms)) if len(transforms) > 1 else total

    if backend == "jax":
        import jax

        trainable = [v.value for v in keras_model.trainable_variables]
        fixed = [v.value for v in keras_model.non_trainable_variables]

        def stateless(weights, state, x):
            return tta_pass(lambda t: keras_model.stateless_call(weights, state, t,
                                                                 training=False)[0], x)

        compiled = jax.jit(stateless)

        def run(x):
            return compiled(trainable, fixed, x)
    elif backend == "tensorflow":
        import tensorflow as tf

        channels = int(keras_model.inputs[0].shape[-1])
        run = tf.function(lambda x: tta_pass(lambda t: keras_model(t, training=False), x),
                          input_signature=[tf.TensorSpec([None, None, None, channels],
                                                         tf.float32)],
                          reduce_retracing=True, autograph=False)
    else:
        def run(x):
            if backend == "torch":
                import torch

                with torch.no_grad():
                    return tta_pass(lambda t: keras_model(t, training=False), x)
            return tta_pass(lambda t: keras_model(t, training=False), x)

    largest: dict = {}

    def predictor(batch: np.ndarray) -> np.ndarray:
        n, rows, cols = batch.shape[:3]
        size = largest[(rows, cols)] = max(largest.get((rows, cols), 0), n)
        if size > n:
            batch = np.concatenate([batch, np.zeros((size - n,) + batch.shape[1:],
                                                    batch.dtype)])
        x = ops.convert_to_tensor(np.ascontiguousarray(batch, dtype=np.float32))
        return np.asarray(ops.convert_to_numpy(run(x)))[:n]

    predictor.crop_tiles = False
    return predictor


def bare_model_throughput(model, n_tiles: int = 0, tile_size: int | None = None,
                          batch_size: int = 4, tta: int = 1, precision: str = "float32",
                          seed: int = 0, calls=None) -> dict:
    """Time the compiled model alone on random tiles (no reading, blending or writing).

    Args:
        model: model path or ``LoadedModel``.
        n_tiles: number of tiles to predict (e.g. ``tiles_predicted`` of a scene).
        tile_size: tile size (default as ``predict_scene``).
        batch_size: tiles per model call.
        tta: TTA setting.
        precision: one of ``PRECISIONS``.
        seed: random seed of the tiles.
        calls: instead of ``n_tiles``: the model calls to replay, a list of
            ``(batch, rows, cols)`` (e.g. recorded from a ``predict_scene`` run, whose
            tiles are cropped to their valid part); each distinct shape is warmed up.

    Returns:
        dict with ``seconds`` (excluding warm-up calls), ``tiles``, ``tile_size``,
        ``batch_size``, ``megapixels`` (pixels through the model per transform) and
        ``tile_megapixels_per_second``.
    """
    loaded = _resolve_model(model)
    spec = model_spec(loaded)
    tile = int(tile_size or default_tile_size(spec.patch_size, spec.depth))
    predictor = get_predictor(loaded, tta, precision)
    if calls is None:
        n_tiles = int(n_tiles)
        calls = [(min(batch_size, n_tiles - done), tile, tile)
                 for done in range(0, n_tiles, batch_size)]
    calls = [tuple(int(v) for v in call) for call in calls]
    rng = np.random.default_rng(seed)
    inputs = {}
    for call in calls:
        if call not in inputs:
            inputs[call] = rng.random(call + (spec.n_channels,), dtype=np.float32)
            predictor(inputs[call])  # warm-up: tracing and allocation
    start = time.perf_counter()
    for call in calls:
        predictor(inputs[call])
    seconds = time.perf_counter() - start
    pixels = sum(b * r * c for b, r, c in calls)
    return {"seconds": seconds, "tiles": sum(call[0] for call in calls), "tile_size": tile,
            "batch_size": batch_size, "megapixels": pixels / 1e6,
            "tile_megapixels_per_second": pixels / 1e6 / seconds if seconds else 0.0}


# --------------------------------------------------------------------------- tiling geometry

def default_tile_size(patch_size: int, depth: int) -> int:
    """Default TILE_SIZE: the training patch, at least ``DEFAULT_MIN_TILE`` (512), rounded
    up to 2**depth.

    Args:
        patch_size: the model's training patch size (0 when unknown).
        depth: the model's depth.
    """
    mult = tile_multiple(depth)
    size = max(int(patch_size or 0), DEFAULT_MIN_TILE)
    return int(math.ceil(size / mult) * mult)


def default_overlap(tile_size: int, depth: int) -> int:
    """Default OVERLAP: twice the model's receptive margin, at most tile/4 and at most
    ``MAX_DEFAULT_OVERLAP`` (64), a multiple of 2**depth (at least one 2**depth step
    when that fits in half a tile).

    Args:
        tile_size: the tile size.
        depth: the model's depth.
    """
    mult = tile_multiple(depth)
    wanted = min(2 * receptive_margin(depth), tile_size // 4, MAX_DEFAULT_OVERLAP)
    overlap = (wanted // mult) * mult
    if overlap == 0 and mult <= tile_size // 2:
        overlap = mult
    return int(overlap)


@dataclass
class TileGrid:
    """Tile layout over a scene (all values in pixels, scene coordinates).

    Tile ``(i, j)`` covers rows ``row_origin(i) .. + tile`` and columns
    ``col_origin(j) .. + tile``; origins start at ``-pad`` (mirror padding).
    """

    height: int
    width: int
    tile: int
    overlap: int
    margin: int   # dead zone (weight 0) at each tile edge
    ramp: int     # linear ramp after the dead zone
    pad: int      # mirror padding at the scene edges
    n_rows: int
    n_cols: int
    multiple: int = 1  # 2**depth: tile crops start and end on this grid

    @property
    def crop_step(self) -> int:
        """Sides of cut tiles are multiples of this (a quarter tile, on the ``multiple``
        grid): few distinct shapes, so few compiled kernels and buffers per shape."""
        return max(self.multiple, (self.tile // 8) // self.multiple * self.multiple)

    @property
    def crop_context(self) -> int:
        """Pixels kept around a tile's valid pixels when it is cropped (see ``valid_crop``):
        as many as a pixel at full weight has from a tile edge, at least ``multiple``."""
        return max(self.overlap - self.margin, self.multiple)

    @property
    def stride(self) -> int:
        """Distance between tile origins."""
        return self.tile - self.overlap

    @property
    def padded_width(self) -> int:
        """Columns spanned by one row of tiles."""
        return (self.n_cols - 1) * self.stride + self.tile

    @property
    def tiles_total(self) -> int:
        """Number of tiles in the grid."""
        return self.n_rows * self.n_cols

    def row_origin(self, i: int) -> int:
        """First scene row of tile row ``i`` (negative in the padding)."""
        return -self.pad + i * self.stride

    def col_origin(self, j: int) -> int:
        """First scene column of tile column ``j``."""
        return -self.pad + j * self.stride


def _tiles_along(size: int, tile: int, stride: int, pad: int, margin: int) -> int:
    # smallest n whose last tile's weighted part reaches the end of the scene
    reach = size + pad + margin - tile
    return 1 if reach <= 0 else int(math.ceil(reach / stride)) + 1


def plan_tiles(height: int, width: int, tile: int, overlap: int, depth: int) -> TileGrid:
    """Lay out overlapping tiles over a scene.

    Args:
        height, width: scene size in pixels.
        tile: tile size (multiple of 2**depth).
        overlap: pixels shared by neighbouring tiles (multiple of 2**depth, <= tile/2).
        depth: the model's depth.

    Returns:
        The ``TileGrid``.
    """
    mult = tile_multiple(depth)
    margin = (3 * overlap) // 8
    ramp = overlap - 2 * margin
    pad = int(math.ceil(margin / mult) * mult)
    stride = tile - overlap
    return TileGrid(height=height, width=width, tile=tile, overlap=overlap, margin=margin,
                    ramp=ramp, pad=pad,
                    n_rows=_tiles_along(height, tile, stride, pad, margin),
                    n_cols=_tiles_along(width, tile, stride, pad, margin), multiple=mult)


def weight_window_1d(tile: int, margin: int, ramp: int) -> np.ndarray:
    """1-D blending weights: 0 in the dead zone, linear ramp, 1 in the centre.

    Ramps of neighbouring tiles (stride ``tile - 2 * margin - ramp``) sum to 1.

    Args:
        tile: tile size.
        margin: dead zone at each edge.
        ramp: ramp length after the dead zone.

    Returns:
        (tile,) float32.
    """
    index = np.arange(tile)
    distance = np.minimum(index, tile - 1 - index).astype(np.float64)
    if ramp > 0:
        weight = np.clip((distance - margin + 0.5) / ramp, 0.0, 1.0)
    else:
        weight = (distance >= margin).astype(np.float64)
    return weight.astype(np.float32)


def weight_window(tile: int, margin: int, ramp: int) -> np.ndarray:
    """2-D separable blending window (tile, tile) float32 (see ``weight_window_1d``)."""
    w = weight_window_1d(tile, margin, ramp)
    return np.outer(w, w).astype(np.float32)


def reflect_index(indices: np.ndarray, size: int) -> np.ndarray:
    """Map indices outside ``0..size-1`` back inside by mirror reflection (edge not repeated).

    Args:
        indices: integer array, any values.
        size: axis length.

    Returns:
        Integer array of the same shape with values in ``0..size-1``.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if size == 1:
        return np.zeros_like(indices)
    period = 2 * (size - 1)
    folded = np.mod(indices, period)
    return np.where(folded >= size, period - folded, folded)


# --------------------------------------------------------------------------- checks

def _check_options(tta, batch_size, probability_dtype, precision) -> None:
    tta_transforms(tta)
    try:
        if int(batch_size) < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise CoreError(f"BATCH_SIZE must be a whole number of at least 1; got "
                        f"{batch_size!r}.") from None
    if probability_dtype not in PROBABILITY_DTYPES:
        raise CoreError(f"Probability data type must be one of {', '.join(PROBABILITY_DTYPES)}; "
                        f"got {probability_dtype!r}.")
    if precision not in PRECISIONS:
        raise CoreError(f"PRECISION must be one of {', '.join(PRECISIONS)}; got {precision!r}.")


def resolve_tiling(spec: ModelSpec, tile_size, overlap, feedback: Feedback) -> tuple[int, int]:
    """Validate TILE_SIZE and OVERLAP (or pick defaults) for a model.

    Returns:
        (tile, overlap).

    Raises:
        CoreError: tile not a multiple of 2**depth or too small; overlap negative
            or more than half the tile.
    """
    mult = tile_multiple(spec.depth)
    if tile_size in (None, 0, ""):
        tile = default_tile_size(spec.patch_size, spec.depth)
    else:
        tile = int(tile_size)
        if tile < max(MIN_TILE, 2 * mult):
            raise CoreError(f"TILE_SIZE {tile} is too small for this model (depth "
                            f"{spec.depth}): use at least {max(MIN_TILE, 2 * mult)}, "
                            f"better {default_tile_size(spec.patch_size, spec.depth)}.")
        if tile % mult:
            raise CoreError(f"TILE_SIZE {tile} is not a multiple of {mult} (2**depth for this "
                            f"depth-{spec.depth} model): use "
                            f"{int(math.ceil(tile / mult) * mult)} or "
                            f"{max(mult, tile // mult * mult)}.")
    if overlap in (None, ""):
        ov = default_overlap(tile, spec.depth)
    else:
        ov = int(overlap)
        if ov < 0 or ov > tile // 2:
            raise CoreError(f"OVERLAP {ov} must be between 0 and half the tile size "
                            f"({tile // 2}); leave it empty for the default "
                            f"({default_overlap(tile, spec.depth)}).")
        rounded = int(round(ov / mult)) * mult
        rounded = min(rounded, (tile // 2) // mult * mult)
        if rounded != ov:
            feedback.info(f"OVERLAP {ov} rounded to {rounded} (a multiple of {mult}, so "
                          "tiles share the model's pooling grid).")
        ov = rounded
    return tile, ov


def _check_bands(spec: ModelSpec, dataset, path: str) -> list:
    count = dataset.count
    if spec.bands:
        if len(spec.bands) != spec.n_channels:
            raise CoreError(f"The model lists bands {spec.bands} but its network takes "
                            f"{spec.n_channels}; the model file is inconsistent.")
        missing = [b for b in spec.bands if b < 1 or b > count]
        if missing:
            raise CoreError(f"The model needs bands {spec.bands} of the input but '{path}' has "
                            f"{count} band(s) (band(s) {missing} missing). Choose a scene from "
                            "the sensor the model was trained on, with the same band layout.")
        return list(spec.bands)
    if count != spec.n_channels:
        raise CoreError(f"The model takes {spec.n_channels} band(s) but '{path}' has {count}. "
                        "Choose a scene with the band layout the model was trained on, or "
                        "train with BANDS to pick bands.")
    return list(range(1, count + 1))


def _warn_grid(spec: ModelSpec, dataset, feedback: Feedback) -> None:
    model_crs = None
    if spec.crs_wkt:
        try:
            from rasterio.crs import CRS
            model_crs = CRS.from_wkt(spec.crs_wkt) if "[" in spec.crs_wkt else \
                CRS.from_user_input(spec.crs_wkt)
        except Exception:  # an unreadable CRS only loses a warning
            model_crs = None
    scene_crs = dataset.crs
    if model_crs is not None and scene_crs is not None:
        def units(crs):
            return "degree" if crs.is_geographic else (crs.linear_units or "unknown")
        if units(model_crs) != units(scene_crs):
            feedback.warning(f"The model was trained on data in {units(model_crs)} but the "
                             f"input is in {units(scene_crs)}; pixel sizes cannot be compared. "
                             "Reproject the input (wetlandunet:alignpair) to the training CRS.")
            return
    if spec.pixel_size:
        try:
            model_res = float(np.mean(np.abs(np.asarray(spec.pixel_size, dtype=float))))
        except (TypeError, ValueError):
            return
        scene_res = float(np.mean(np.abs(dataset.res)))
        if model_res > 0 and scene_res > 0:
            ratio = scene_res / model_res
            if ratio > 2 or ratio < 0.5:
                feedback.warning(f"The input's pixel size ({scene_res:g}) is {ratio:.2g} times "
                                 f"the training data's ({model_res:g}); the model sees features "
                                 "at the wrong scale and may classify poorly. Resample the input "
                                 "(wetlandunet:alignpair PIXEL_SIZE) to the training pixel size.")


def _output_bytes(height: int, width: int, n_classes: int, outputs: dict,
                  probability_dtype: str) -> dict:
    sizes = {}
    pixels = float(height) * width
    for key, path in outputs.items():
        if not path:
            continue
        if key == "output":
            size = pixels
        elif key == "output_probabilities":
            size = pixels * n_classes * (1 if probability_dtype == "uint8" else 4)
        else:
            size = pixels * 4
        sizes[path] = size * 1.05 + 1e5  # headers, tile index
    return sizes


def _check_outputs(outputs: dict, inputs: list, height: int, width: int, n_classes: int,
                   probability_dtype: str) -> None:
    seen = {}
    for key, path in outputs.items():
        if not path:
            continue
        name = key.upper()
        rasterlib.check_output_path(path, inputs, what=name)
        real = os.path.realpath(path)
        if real in seen:
            raise CoreError(f"{name} and {seen[real]} are the same file '{path}': give each "
                            "output its own path.")
        seen[real] = name
    per_folder: dict = {}
    for path, size in _output_bytes(height, width, n_classes, outputs, probability_dtype).items():
        folder = os.path.dirname(os.path.abspath(path))
        per_folder[folder] = per_folder.get(folder, 0.0) + size
    for folder, size in per_folder.items():
        rasterlib.check_disk_space(os.path.join(folder, "x"), size, what="prediction outputs")


# --------------------------------------------------------------------------- reading

def _mask_band_used(dataset) -> bool:
    from rasterio.enums import MaskFlags

    flags = dataset.mask_flag_enums[0] if dataset.count else []
    return MaskFlags.per_dataset in flags or MaskFlags.alpha in flags


def valid_block(block: np.ndarray, nodatas) -> np.ndarray:
    """Valid pixels of a block: finite on every band and not the band's nodata on any band.

    Args:
        block: (bands, rows, cols) raw values.
        nodatas: one nodata value (or None) per band.

    Returns:
        (rows, cols) boolean.
    """
    valid = np.ones(block.shape[1:], dtype=bool)
    floating = np.issubdtype(block.dtype, np.floating)
    for band, nodata in zip(block, nodatas):
        if floating:
            valid &= np.isfinite(band)
        if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
            valid &= band != np.asarray(nodata).astype(block.dtype)
    return valid


class _StripReader:
    """Reads one row of tiles at a time: raw -> valid -> normalised, mirror-padded."""

    def __init__(self, path: str, band_indexes: list, stats: dict, grid: TileGrid):
        import rasterio

        self.dataset = rasterio.open(path)
        self.bands = band_indexes
        self.stats = stats
        self.grid = grid
        self.nodatas = [self.dataset.nodatavals[b - 1] for b in band_indexes]
        self.use_mask = _mask_band_used(self.dataset)
        self.col_index = reflect_index(np.arange(grid.padded_width) - grid.pad, grid.width)

    def close(self) -> None:
        self.dataset.close()

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read tile row ``i`` (raw values: tiles are normalised one by one, see ``tile``).

        Returns:
            (strip, strip_valid, scene_valid): strip (bands, tile, width) raw values of
            the tile row's rows (mirrored above and below the scene); strip_valid
            (tile, width) bool likewise; scene_valid (tile, width) bool for scene rows
            ``row_origin(i) .. + tile`` (False outside the scene). Columns are the
            scene's: ``tile`` mirrors them at the left and right edges.
        """
        from rasterio.windows import Window

        g = self.grid
        y0 = g.row_origin(i)
        rows = reflect_index(np.arange(y0, y0 + g.tile), g.height)
        r_lo, r_hi = int(rows.min()), int(rows.max()) + 1
        window = Window(0, r_lo, g.width, r_hi - r_lo)
        raw = self.dataset.read(indexes=self.bands, window=window)
        valid = valid_block(raw, self.nodatas)
        if self.use_mask:
            valid &= self.dataset.read_masks(self.bands[0], window=window) > 0
        local = rows - r_lo
        if _contiguous(local):  # rows inside the scene: views, no copy
            strip, strip_valid = raw[:, local[0]:local[-1] + 1], valid[local[0]:local[-1] + 1]
        else:
            strip, strip_valid = raw[:, local], valid[local]
        scene_valid = np.zeros((g.tile, g.width), dtype=bool)
        a, b = max(y0, 0), min(y0 + g.tile, g.height)
        scene_valid[a - y0:b - y0] = valid[a - r_lo:b - r_lo]
        return strip, strip_valid, scene_valid

    def tile(self, strip: np.ndarray, strip_valid: np.ndarray, j: int,
             box: tuple | None = None) -> np.ndarray:
        """Normalised model input (rows, cols, channels) of tile column ``j`` of a strip.

        Args:
            box: tile-local ``(r0, r1, c0, c1)`` to cut (see ``valid_crop``); None = whole.
        """
        t = self.grid.tile
        r0, r1, c0, c1 = box or (0, t, 0, t)
        x = j * self.grid.stride
        cols = self.col_index[x + c0:x + c1]
        if _contiguous(cols):
            cols = slice(int(cols[0]), int(cols[-1]) + 1)
        return normalize(strip[:, r0:r1, cols], self.stats, strip_valid[r0:r1, cols])


def _contiguous(index: np.ndarray) -> bool:
    """True when an index array is ``start, start + 1, ...`` (a slice does the same)."""
    return bool(len(index) and index[-1] - index[0] == len(index) - 1 and
                (len(index) < 2 or (np.diff(index) == 1).all()))


def valid_crop(scene_valid: np.ndarray, grid: TileGrid, j: int,
               crop: bool = True) -> tuple | None:
    """The part of tile ``j`` of a strip the model must see, or None to skip the tile.

    Only the weighted part of a tile (inside its dead zones, inside the scene) is
    ever written from it, so a tile without a valid pixel there is skipped, and a
    tile whose valid pixels fill only part of it (the edge of a satellite
    footprint, a cloud mask) is cut to the bounding box of those pixels, widened by
    ``grid.crop_context`` pixels of context on every side (as much as a pixel at
    full weight has from an ordinary tile edge; invalid pixels are zeros at the
    model's input, just like the convolutions' own padding) and rounded outwards to
    the ``grid.multiple`` grid of the tile, so the pooling grid stays that of the
    whole tile, and its sides to multiples of ``grid.crop_step`` (a quarter tile),
    so a scene has few distinct tile shapes. Pixels outside the box get no weight
    from this tile.

    Args:
        scene_valid: (tile, width) bool validity of the scene rows of the tile row
            (False outside the scene), as returned by the strip reader.
        grid: the tile grid.
        j: tile column.
        crop: False returns the whole tile whenever it has a valid pixel.

    Returns:
        Tile-local ``(r0, r1, c0, c1)`` (multiples of ``grid.multiple``, sides multiples
        of ``grid.crop_step`` or the whole tile), or None.
    """
    g = grid
    x0 = g.col_origin(j)
    lo = max(0, x0 + g.margin)
    hi = min(g.width, x0 + g.tile - g.margin)
    if hi <= lo:
        return None
    core = scene_valid[g.margin:g.tile - g.margin, lo:hi]
    rows = np.flatnonzero(core.any(axis=1))
    if rows.size == 0:
        return None
    if not crop:
        return 0, g.tile, 0, g.tile
    cols = np.flatnonzero(core.any(axis=0))
    q, c, t = g.multiple, g.crop_context, g.tile
    r0 = max(0, (g.margin + int(rows[0]) - c) // q * q)
    r1 = min(t, -(-(g.margin + int(rows[-1]) + 1 + c) // q) * q)
    c0 = max(0, (lo - x0 + int(cols[0]) - c) // q * q)
    c1 = min(t, -(-(lo - x0 + int(cols[-1]) + 1 + c) // q) * q)
    step = g.crop_step
    r0, r1 = _grow_to_step(r0, r1, step, t)
    c0, c1 = _grow_to_step(c0, c1, step, t)
    return r0, r1, c0, c1


def _grow_to_step(a: int, b: int, step: int, tile: int) -> tuple[int, int]:
    """Widen ``a..b`` to a length that is a multiple of ``step`` (or the tile), inside it."""
    size = min(tile, -(-(b - a) // step) * step)
    b = a + size
    if b > tile:
        a, b = tile - size, tile
    return a, b


# --------------------------------------------------------------------------- writing

class _Outputs:
    """The open output datasets; writes finished rows in block-aligned chunks."""

    def __init__(self, datasets: dict, spec: ModelSpec, probability_dtype: str, width: int,
                 block_rows: int):
        self.datasets = datasets
        self.spec = spec
        self.probability_dtype = probability_dtype
        self.width = width
        self.block_rows = block_rows
        self.next_row = 0
        self.pending: list = []
        self.pending_rows = 0
        self.counts = np.zeros(spec.n_classes + 1, dtype=np.int64)
        palette = np.zeros((spec.n_classes + 1, 4), dtype=np.uint8)
        for k, color in enumerate(spec.class_colors[:spec.n_classes]):
            palette[k + 1, :3] = hex_to_rgb(color)
            palette[k + 1, 3] = 255
        self.palette = palette

    def add(self, probs: np.ndarray, valid: np.ndarray) -> None:
        """Convert finished rows (probabilities (rows, width, N), valid (rows, width))."""
        classes = np.argmax(probs, axis=-1).astype(np.uint8) + 1
        classes[~valid] = CLASS_NODATA
        self.counts += np.bincount(classes.ravel(), minlength=self.spec.n_classes + 1)
        chunk = {"output": classes[None]}
        if "output_probabilities" in self.datasets:
            bands = np.moveaxis(probs, -1, 0)
            if self.probability_dtype == "uint8":
                out = np.rint(np.clip(bands, 0, 1) * PROB_SCALE_UINT8).astype(np.uint8)
            else:
                out = bands.astype(np.float32)
            out[:, ~valid] = PROB_NODATA[self.probability_dtype]
            chunk["output_probabilities"] = out
        if "output_map" in self.datasets:
            chunk["output_map"] = np.moveaxis(self.palette[classes], -1, 0)
        self.pending.append(chunk)
        self.pending_rows += classes.shape[0]
        if self.pending_rows >= self.block_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self.pending:
            return
        from rasterio.windows import Window

        joined = {key: np.concatenate([c[key] for c in self.pending], axis=1)
                  for key in self.pending[0]}
        n = self.pending_rows if final else (self.pending_rows // self.block_rows) * self.block_rows
        window = Window(0, self.next_row, self.width, n)
        for key, array in joined.items():
            self.datasets[key].write(array[:, :n], window=window)
        self.next_row += n
        rest = self.pending_rows - n
        self.pending = [{key: array[:, n:] for key, array in joined.items()}] if rest else []
        self.pending_rows = rest

    def close(self) -> None:
        """Write what is left."""
        self._flush(final=True)


class _Blender:
    """Accumulates weighted tile probabilities for one strip and hands finished rows on.

    Tiles arrive in raster order (tile row by tile row); a tile of a later row
    first finishes every earlier row (``end_row``), so batches may span rows.
    """

    #: Finished rows are converted in chunks of this many rows (bounds temporaries).
    CHUNK_ROWS = 64

    def __init__(self, grid: TileGrid, n_classes: int, outputs: _Outputs):
        self.grid = grid
        self.outputs = outputs
        self.window = weight_window(grid.tile, grid.margin, grid.ramp)
        self.acc = np.zeros((grid.tile, grid.width, n_classes), dtype=np.float32)
        self.weights = np.zeros((grid.tile, grid.width), dtype=np.float32)
        self.valid: dict = {}   # tile row -> (tile, width) bool validity of its rows
        self.row = 0            # the tile row the buffers hold
        self.written = 0
        self.valid_pixels = 0

    def set_valid(self, i: int, valid: np.ndarray) -> None:
        """Record the validity (tile, width) of the scene rows of tile row ``i``."""
        self.valid[i] = valid

    def add_batch(self, tiles: list, probs: np.ndarray) -> None:
        """Add predicted tiles with probabilities (B, rows, cols, N).

        ``tiles`` is ``[(row, col), ...]`` for whole tiles or ``[(row, col, r0, c0), ...]``
        for tiles cut to a box starting at tile-local row ``r0``, column ``c0``.
        """
        g = self.grid
        for tile, tile_probs in zip(tiles, probs):
            i, j = tile[0], tile[1]
            r0, c0 = (tile[2], tile[3]) if len(tile) > 2 else (0, 0)
            while self.row < i:
                self.end_row()
            rows, cols = tile_probs.shape[:2]
            x0 = g.col_origin(j) + c0
            lo, hi = max(0, x0), min(g.width, x0 + cols)
            w = self.window[r0:r0 + rows, lo - x0 + c0:hi - x0 + c0]
            self.acc[r0:r0 + rows, lo:hi] += tile_probs[:, lo - x0:hi - x0] * w[:, :, None]
            self.weights[r0:r0 + rows, lo:hi] += w

    def finish(self) -> None:
        """End every remaining tile row and write what is left."""
        while self.row < self.grid.n_rows:
            self.end_row()
        self.outputs.close()

    def end_row(self) -> None:
        """Finish the current tile row: write rows no later tile reaches, slide the buffers."""
        g = self.grid
        i = self.row
        y0 = g.row_origin(i)
        last = i == g.n_rows - 1
        limit = g.height if last else min(g.height, g.row_origin(i + 1) + g.margin)
        for a in range(max(self.written, 0), limit, self.CHUNK_ROWS):
            b = min(a + self.CHUNK_ROWS, limit)
            weights = self.weights[a - y0:b - y0]
            valid = self.valid[i][a - y0:b - y0] & (weights > 0)
            probs = self.acc[a - y0:b - y0] / np.where(weights > 0, weights, 1)[:, :, None]
            self.valid_pixels += int(valid.sum())
            self.outputs.add(probs, valid)
            self.written = b
        del self.valid[i]
        self.row += 1
        if not last:
            s = g.stride
            for buffer in (self.acc, self.weights):
                buffer[:g.tile - s] = buffer[s:]
                buffer[g.tile - s:] = 0


# --------------------------------------------------------------------------- pipeline

class _Stop(Exception):
    pass


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop()
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise _Stop()
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def _io_error(err: BaseException, what: str, advice: str) -> BaseException:
    """Turn a GDAL/OS error raised in a pipeline thread into a CoreError that says what to do."""
    from rasterio.errors import RasterioError

    if isinstance(err, (RasterioError, OSError)) and not isinstance(err, CoreError):
        return CoreError(f"{what}: {err}. {advice}")
    return err


def _reader_main(reader: _StripReader, grid: TileGrid, batch_size: int, out: queue.Queue,
                 stop: threading.Event, errors: list, crop: bool = True) -> None:
    """Read strips, skip tiles without valid pixels, cut the others to their valid part
    (``valid_crop``) and send batches of tiles of one shape.

    Whole tiles come first in each tile row, so their batches span rows and are
    full; cut tiles are batched with the tiles of their row that have the same
    shape (the blender takes a row's tiles in any order, rows in order).

    Messages: ("row", i, valid, n_skipped) once per tile row, before any of its
    tiles; ("batch", [(i, j, r0, c0), ...], array); ("done",).
    """
    try:
        g = grid
        tiles: list = []
        batch = None
        for i in range(g.n_rows):
            strip, strip_valid, valid = reader.read(i)
            boxes = [(j, valid_crop(valid, g, j, crop)) for j in range(g.n_cols)]
            todo = [(j, box) for j, box in boxes if box is not None]
            _put(out, ("row", i, valid, g.n_cols - len(todo)), stop)
            # whole tiles first, then cut tiles grouped by shape (stable: raster order)
            todo.sort(key=lambda item: (item[1] != (0, g.tile, 0, g.tile),
                                        item[1][1] - item[1][0], item[1][3] - item[1][2]))
            for j, box in todo:
                r0, r1, c0, c1 = box
                if batch is not None and batch.shape[1:3] != (r1 - r0, c1 - c0):
                    _put(out, ("batch", tiles, batch[:len(tiles)]), stop)
                    tiles, batch = [], None
                if batch is None:
                    batch = np.empty((batch_size, r1 - r0, c1 - c0, strip.shape[0]),
                                     np.float32)
                batch[len(tiles)] = reader.tile(strip, strip_valid, j, box)
                tiles.append((i, j, r0, c0))
                if len(tiles) == batch_size:
                    _put(out, ("batch", tiles, batch), stop)
                    tiles, batch = [], None
            del strip, strip_valid
        if tiles:
            _put(out, ("batch", tiles, batch[:len(tiles)]), stop)
        _put(out, ("done",), stop)
    except _Stop:
        pass
    except BaseException as err:  # handed to the main thread
        errors.append(_io_error(err, "Reading the input scene failed",
                                "The file may be corrupt or truncated; check it with "
                                "gdalinfo -checksum, or export it again."))
        stop.set()
    finally:
        reader.close()


def _writer_main(blender: _Blender, inbox: queue.Queue, stop: threading.Event,
                 errors: list) -> None:
    try:
        while True:
            item = _get(inbox, stop)
            kind = item[0]
            if kind == "row":
                blender.set_valid(item[1], item[2])
            elif kind == "batch":
                blender.add_batch(item[1], item[2])
            elif kind == "done":
                blender.finish()
                return
    except _Stop:
        pass
    except BaseException as err:
        errors.append(_io_error(err, "Writing the outputs failed",
                                "Check free disk space and write permission of the output "
                                "folder."))
        stop.set()


def _run_pipeline(reader: _StripReader, blender: _Blender, predictor, grid: TileGrid,
                  batch_size: int, feedback: Feedback, crop: bool = True) -> dict:
    """Run reader thread -> model (this thread) -> writer thread; return tile counts.

    The calling thread only runs the model, checks cancel and reports progress,
    so feedback is always used from the caller's thread.
    """
    stop = threading.Event()
    errors: list = []
    # one batch waiting each way is enough: the model takes far longer than reading a
    # batch or blending one, and every batch waiting is memory (16 MB at 4 x 512**2)
    to_model: queue.Queue = queue.Queue(maxsize=1)
    to_writer: queue.Queue = queue.Queue(maxsize=1)
    threads = [
        threading.Thread(target=_reader_main, name="wetland-read", daemon=True,
                         args=(reader, grid, batch_size, to_model, stop, errors, crop)),
        threading.Thread(target=_writer_main, name="wetland-write", daemon=True,
                         args=(blender, to_writer, stop, errors)),
    ]
    for thread in threads:
        thread.start()
    predicted = skipped = pixels = calls = 0
    finished = False
    try:
        while True:
            item = _get(to_model, stop)
            kind = item[0]
            feedback.check_canceled()
            if kind == "batch":
                probs = predictor(check_finite(item[2], "prediction tiles"))
                _put(to_writer, (kind, item[1], probs), stop)
                predicted += len(item[1])
                pixels += int(np.prod(item[2].shape[:3]))
                calls += 1
            else:
                if kind == "row":
                    skipped += item[3]
                _put(to_writer, item, stop)
                if kind == "done":
                    break
            feedback.progress((predicted + skipped) / max(grid.tiles_total, 1))
        threads[1].join()
        finished = not errors
    except _Stop:
        pass
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    if not finished:
        raise RuntimeError("prediction pipeline stopped early without an error")
    return {"tiles_predicted": predicted, "tiles_skipped": skipped, "model_pixels": pixels,
            "model_calls": calls}


# --------------------------------------------------------------------------- outputs

def gdal_cache_bytes(dataset, grid: TileGrid, n_classes: int, probability_dtype: str) -> int:
    """GDAL block cache for one prediction: the input blocks one strip touches, plus one
    block row of every output, plus slack; between ``GDAL_CACHE_MIN`` and ``_MAX``.

    GDAL's default (5% of RAM) would keep every read and written block of a large
    scene in memory; a cache sized to a strip keeps memory independent of the
    scene's height while no input block is decompressed twice.
    """
    block_rows = max(1, dataset.block_shapes[0][0])
    item = np.dtype(dataset.dtypes[0]).itemsize
    strip_block_rows = int(math.ceil(grid.tile / block_rows)) + 1
    inputs = strip_block_rows * block_rows * dataset.width * dataset.count * item
    per_pixel = 1 + n_classes * (1 if probability_dtype == "uint8" else 4) + 4
    outputs = int(rasterlib.GTIFF_OPTIONS["blockysize"]) * dataset.width * per_pixel
    wanted = inputs + outputs + 16 * 1024 * 1024
    return int(min(max(wanted, GDAL_CACHE_MIN), GDAL_CACHE_MAX))


def _base_profile(dataset) -> dict:
    profile = dict(rasterlib.GTIFF_OPTIONS)
    profile.update(width=dataset.width, height=dataset.height, crs=dataset.crs,
                   transform=dataset.transform)
    return profile


def _open_outputs(stack: ExitStack, paths: dict, base: dict, spec: ModelSpec,
                  probability_dtype: str) -> dict:
    import rasterio
    from rasterio.enums import ColorInterp

    datasets = {}
    names_tag = json.dumps(spec.class_names)
    for key, path in paths.items():
        if not path:
            continue
        tmp = stack.enter_context(atomic_output(path))
        profile = dict(base)
        if key == "output":
            profile.update(count=1, dtype="uint8", nodata=CLASS_NODATA)
        elif key == "output_probabilities":
            profile.update(count=spec.n_classes, dtype=probability_dtype,
                           nodata=PROB_NODATA[probability_dtype])
        else:
            profile.update(count=4, dtype="uint8", nodata=None, photometric="RGB",
                           alpha="YES")
        dst = stack.enter_context(rasterio.open(tmp, "w", **profile))
        dst.update_tags(class_names=names_tag, class_colors=json.dumps(spec.class_colors),
                        software="Wetland U-Net")
        if key == "output":
            dst.set_band_description(1, "class")
            colormap = {0: (0, 0, 0, 0)}
            for k, color in enumerate(spec.class_colors[:spec.n_classes]):
                colormap[k + 1] = hex_to_rgb(color) + (255,)
            dst.write_colormap(1, colormap)
        elif key == "output_probabilities":
            for k, name in enumerate(spec.class_names[:spec.n_classes]):
                dst.set_band_description(k + 1, str(name))
            if probability_dtype == "uint8":
                dst.scales = [1.0 / PROB_SCALE_UINT8] * spec.n_classes
                dst.offsets = [0.0] * spec.n_classes
        else:
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                               ColorInterp.alpha]
            for k, name in enumerate(("red", "green", "blue", "alpha")):
                dst.set_band_description(k + 1, name)
        datasets[key] = dst
    return datasets


# --------------------------------------------------------------------------- entry point

def predict_scene(model, input, output, output_probabilities=None, output_map=None,
                  tile_size=None, overlap=None, tta=1, batch_size=4, probability_dtype="uint8",
                  precision="float32", feedback=None) -> dict:
    """Classify a scene with a trained model: tiled, overlapping, blended, streamed to disk.

    Args:
        model: a model file path (loaded once per process, see ``get_cached_model``)
            or a ``LoadedModel``.
        input: the scene (any GDAL raster); the model's BANDS are read from it.
        output: class raster to write (uint8, class ids 1..N, nodata 0).
        output_probabilities: optional per-class probability raster.
        output_map: optional RGBA picture in the class colours.
        tile_size: tile size in pixels, a multiple of 2**depth (default: the training
            patch, at least 512).
        overlap: pixels shared by neighbouring tiles (default: twice the model's
            receptive margin, at most tile/4 and at most 64); rounded to a multiple
            of 2**depth.
        tta: 1, 2, 4 or 8 dihedral transforms averaged (every transform of a tile
            runs on the same cut tile, so TTA work scales with the valid tiles only).
        batch_size: tiles per model call.
        probability_dtype: "uint8" (p * 254, nodata 255) or "float32" (nodata -1).
        precision: "float32", "mixed_float16" or "mixed_bfloat16".
        feedback: ``Feedback`` for progress, messages and cancel.

    Returns:
        dict with ``output``, ``output_probabilities``, ``output_map`` (paths or None),
        ``valid_pixels``, ``tiles_total``, ``tiles_predicted``, ``tiles_skipped``,
        ``model_megapixels`` (pixels sent to the model, per TTA transform: the tiles
        cut to their valid part), ``model_calls``, ``seconds``, ``megapixels_per_second`` (valid pixels), ``class_names``,
        ``class_pixel_counts`` (name -> pixels), ``tile_size``, ``overlap``, ``tta``.

    Raises:
        CoreError: for inputs that cannot work (checked before any output is written).
        Canceled: when canceled; no output is left behind.
    """
    feedback = feedback or Feedback()
    start = time.perf_counter()
    _check_options(tta, batch_size, probability_dtype, precision)
    batch_size = int(batch_size)
    if not output:
        raise CoreError("No OUTPUT given: choose a path for the class raster.")
    paths = {"output": output, "output_probabilities": output_probabilities or None,
             "output_map": output_map or None}
    model_path = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    loaded = _resolve_model(model)
    spec = model_spec(loaded, feedback)
    with rasterlib.open_raster(input, "input scene") as src:
        band_indexes = _check_bands(spec, src, input)
        tile, ov = resolve_tiling(spec, tile_size, overlap, feedback)
        _check_outputs(paths, [input, model_path], src.height, src.width, spec.n_classes,
                       probability_dtype)
        _warn_grid(spec, src, feedback)
        grid = plan_tiles(src.height, src.width, tile, ov, spec.depth)
        base = _base_profile(src)
        cache_bytes = gdal_cache_bytes(src, grid, spec.n_classes, probability_dtype)
    feedback.info(f"Predicting {grid.width} x {grid.height} px with tiles of {tile} px, "
                  f"overlap {ov} px ({grid.n_cols} x {grid.n_rows} tiles), TTA {tta}, "
                  f"batch {batch_size}, {precision}.")
    predictor = get_predictor(loaded, tta, precision)
    feedback.check_canceled()
    import rasterio

    with ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=cache_bytes))
        datasets = _open_outputs(stack, paths, base, spec, probability_dtype)
        outputs = _Outputs(datasets, spec, probability_dtype, grid.width,
                           block_rows=int(base["blockysize"]))
        blender = _Blender(grid, spec.n_classes, outputs)
        reader = _StripReader(input, band_indexes, spec.normalization, grid)
        stack.callback(reader.close)
        counts = _run_pipeline(reader, blender, predictor, grid, batch_size, feedback,
                               crop=CROP_TO_VALID and getattr(predictor, "crop_tiles", True))
        feedback.check_canceled()
    seconds = time.perf_counter() - start
    valid = blender.valid_pixels
    if valid == 0:
        feedback.warning("The input has no valid pixel (all nodata, NaN or masked): the "
                         "outputs hold only nodata.")
    feedback.progress(1.0)
    class_counts = {str(name): int(outputs.counts[k + 1])
                    for k, name in enumerate(spec.class_names[:spec.n_classes])}
    return {
        "output": output,
        "output_probabilities": paths["output_probabilities"],
        "output_map": paths["output_map"],
        "valid_pixels": int(valid),
        "tiles_total": grid.tiles_total,
        "tiles_predicted": counts["tiles_predicted"],
        "tiles_skipped": counts["tiles_skipped"],
        "model_megapixels": round(counts["model_pixels"] / 1e6, 4),
        "model_calls": counts["model_calls"],
        "seconds": round(seconds, 3),
        "megapixels_per_second": round(valid / 1e6 / seconds, 4) if seconds > 0 else 0.0,
        "class_names": [str(n) for n in spec.class_names[:spec.n_classes]],
        "class_pixel_counts": class_counts,
        "tile_size": tile,
        "overlap": ov,
        "tta": int(tta),
    }


__all__ = ["predict_scene", "get_cached_model", "model_cache_info", "clear_model_cache",
           "bare_model_throughput", "dihedral_forward", "dihedral_inverse", "plan_tiles",
           "weight_window", "reflect_index", "default_tile_size", "default_overlap",
           "Canceled"]
