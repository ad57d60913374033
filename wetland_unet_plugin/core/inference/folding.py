"""The model as it runs for prediction: mixed-precision rebuild and the folded inference graph.

``cast_model`` rebuilds a model under a Keras mixed-precision policy (the output
layer stays float32). ``inference_function`` turns a functional model into a
leaner forward function: batch normalisation folded into the convolutions,
convolution + bias + ReLU fused, dropout removed. ``inference_forward`` uses it
only after checking it against the Keras model once per model.
"""

from __future__ import annotations

import numpy as np

from ..feedback import CoreError
from ..modelfile import LoadedModel
from ..unet import tile_multiple
from .spec import count_pools


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
        raise CoreError(
            f"The model cannot be rebuilt for precision {precision} ({err}); use PRECISION float32."
        ) from None
    return clone


#: Layers that are the identity at inference time.
_INFERENCE_IDENTITY = frozenset(
    {
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
        "ActivityRegularization",
    }
)


class _UnsupportedGraphError(Exception):
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
            raise _UnsupportedGraphError("several inputs or outputs")
        entry = entry[0]
    if tuple(entry[1:3]) != (0, 0):
        raise _UnsupportedGraphError("shared layer")
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
    except (_UnsupportedGraphError, KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


def _build_inference(keras_model):
    import tensorflow as tf

    config = keras_model.get_config()
    if not isinstance(config, dict) or "layers" not in config:
        raise _UnsupportedGraphError("not a functional model")
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
            raise _UnsupportedGraphError(f"layer {layer['name']} called more than once")
        refs = _tensor_refs(nodes[0].get("args", []), [])
        if any(tuple(ref[1:3]) != (0, 0) for ref in refs):
            raise _UnsupportedGraphError("shared layer")
        inputs_of[layer["name"]] = [ref[0] for ref in refs]
        for ref in refs:
            consumers.setdefault(ref[0], []).append(layer["name"])

    def only_consumer(name, class_name):
        users = consumers.get(name, [])
        if (
            len(users) == 1
            and name != output_name
            and by_name[users[0]]["class_name"] == class_name
        ):
            return users[0]
        return None

    alias: dict = {}  # layer whose output is another layer's output -> that layer
    fused: dict = {}  # Conv2D name -> (kernel, bias, strides, padding, dilations, relu, dtype)
    folded = dropped = 0
    for layer in layers:
        name, cfg = layer["name"], layer["config"]
        if layer["class_name"] in _INFERENCE_IDENTITY:
            if len(inputs_of[name]) != 1:
                raise _UnsupportedGraphError("identity layer with several inputs")
            alias[name] = inputs_of[name][0]
            dropped += 1
            continue
        if (
            layer["class_name"] != "Conv2D"
            or cfg.get("data_format", "channels_last") != "channels_last"
            or int(cfg.get("groups", 1)) != 1
            or cfg.get("activation") not in ("linear", "relu")
        ):
            continue
        conv = keras_model.get_layer(name)
        weights = conv.get_weights()
        kernel = weights[0].astype(np.float64)
        bias = weights[1].astype(np.float64) if cfg.get("use_bias") else np.zeros(kernel.shape[-1])
        last = name
        relu = cfg["activation"] == "relu"
        bn_name = None if relu else only_consumer(name, "BatchNormalization")
        if bn_name is not None:
            bn = keras_model.get_layer(bn_name)
            axis = by_name[bn_name]["config"].get("axis")
            axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
            if axis in (-1, 3) and len(inputs_of[bn_name]) == 1:

                def value(var, default):
                    return default if var is None else np.asarray(_to_numpy(var), dtype=np.float64)

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
        fused[name] = (
            tf.constant(kernel, dtype=dtype),
            tf.constant(bias, dtype=dtype),
            strides,
            str(cfg.get("padding", "valid")).upper(),
            dilations,
            relu,
            dtype,
        )

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
        steps.append(
            (
                name,
                args,
                kwargs,
                fused.get(name),
                None if name in fused else keras_model.get_layer(name),
            )
        )
    if resolve(input_name) != input_name:
        raise _UnsupportedGraphError("input aliased")

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
                y = tf.nn.conv2d(
                    tf.cast(args[0], dtype),
                    kernel,
                    strides=strides,
                    padding=padding,
                    dilations=dilations,
                )
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


def inference_forward(loaded: LoadedModel, keras_model):
    """The forward function of ``keras_model`` (``loaded``'s model, possibly cast) for
    prediction: its inference graph when that reproduces ``loaded``'s model (checked
    once per model), else the Keras model as it is."""
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
    size = 2 * tile_multiple(count_pools(keras_model) or 1)
    size = max(size, 32)
    try:
        channels = int(keras_model.inputs[0].shape[-1])
        x = np.random.default_rng(0).random((1, size, size, channels), dtype=np.float32)
        want = np.asarray(keras_model(x, training=False), dtype=np.float64)
        got = np.asarray(forward(x), dtype=np.float64)
    except Exception:  # any failure here only means: run the model as it is
        return False
    return want.shape == got.shape and bool(np.allclose(got, want, rtol=1e-3, atol=1e-4))
