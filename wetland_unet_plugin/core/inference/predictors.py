"""Compiled predictors: ``f(batch) -> probabilities``, averaged over the TTA transforms.

Under TensorFlow the predictor is one ``tf.function`` running the inference
graph (``folding.inference_forward``) on every dihedral transform of the batch
and averaging the probabilities turned back. Under JAX and PyTorch (or on
request) the portable predictor does the same with Keras ops.
"""

from __future__ import annotations

import numpy as np

from .. import dihedral
from ..modelfile import LoadedModel
from .folding import cast_model, inference_forward

#: On a CPU a batch is run in model calls of at most this many pixels (but at least two
#: tiles): as fast per pixel as one call, with half the activations in memory (see
#: docs/decisions.md). On a GPU the batch is one call.
CPU_CALL_PIXELS = 2 * 512 * 512


def get_predictor(
    loaded: LoadedModel,
    tta: int = 1,
    precision: str = "float32",
    *,
    fold: bool = True,
    portable: bool = False,
    votes: bool = False,
):
    """Return a compiled function ``f(batch) -> probabilities`` for a model, cached on it.

    ``batch`` is (B, rows, cols, channels) float32, rows and cols multiples of
    2**depth (not necessarily equal: quarter turns swap them and turn back); the
    result is (B, rows, cols, classes) float32 numpy, averaged over the TTA
    transforms in probability space. The function has a ``crop_tiles`` attribute:
    False when tiles must not be cut to their valid part (see ``portable_predictor``).

    Args:
        loaded: the loaded model.
        tta: 1, 2, 4 or 8.
        precision: one of ``schema.model.PRECISIONS``.
        fold: run the model as its inference graph (``folding.inference_function``),
            checked against the Keras model once on a small input; a model it cannot
            handle runs as it is. False runs the Keras model as it is.
        portable: use ``portable_predictor`` even under TensorFlow (it is always
            used under the JAX and PyTorch backends).
        votes: also return, after the N probabilities, N vote shares: per class the
            share of the TTA transforms whose own argmax is that class (for the TTA
            disagreement of predict's OUTPUT_UNCERTAINTY); the result has 2N channels.
    """
    transforms = dihedral.tta_transforms(tta)
    store = loaded.__dict__.setdefault("_wetland_predictors", {})
    import keras

    portable = bool(portable) or keras.backend.backend() != "tensorflow"
    key = (precision, transforms, bool(fold), portable) + (("votes",) if votes else ())
    if key in store:
        return store[key]
    models = loaded.__dict__.setdefault("_wetland_cast_models", {})
    if precision not in models:
        models[precision] = cast_model(loaded.keras_model, precision)
    keras_model = models[precision]
    if portable:
        store[key] = portable_predictor(keras_model, transforms, votes)
        return store[key]
    import tensorflow as tf

    channels = int(keras_model.inputs[0].shape[-1])
    if fold:
        forward = inference_forward(loaded, keras_model)
    else:

        def forward(x):
            return keras_model(x, training=False)

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)],
        reduce_retracing=True,
        autograph=False,
    )
    def run(x):
        total = shares = None
        for k in transforms:
            y = tf.cast(forward(dihedral.tf_forward(x, k)), tf.float32)
            y = dihedral.tf_inverse(y, k)
            total = y if total is None else total + y
            if votes:
                vote = tf.one_hot(tf.argmax(y, axis=-1), tf.shape(y)[-1], dtype=tf.float32)
                shares = vote if shares is None else shares + vote
        if len(transforms) > 1:
            total = total / float(len(transforms))
        if votes:
            return tf.concat([total, shares / float(len(transforms))], axis=-1)
        return total

    on_cpu = not tf.config.list_logical_devices("GPU")

    def predictor(batch: np.ndarray) -> np.ndarray:
        n, rows, cols = batch.shape[:3]
        step = max(2, CPU_CALL_PIXELS // max(rows * cols, 1)) if on_cpu else n
        if step >= n:
            return run(tf.convert_to_tensor(batch, dtype=tf.float32)).numpy()
        return np.concatenate(
            [
                run(tf.convert_to_tensor(batch[a : a + step], dtype=tf.float32)).numpy()
                for a in range(0, n, step)
            ]
        )

    predictor.crop_tiles = True
    store[key] = predictor
    return predictor


def portable_predictor(keras_model, transforms: tuple, votes: bool = False):
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
        votes: append the transforms' vote shares (see ``get_predictor``).

    Returns:
        ``f(batch) -> probabilities`` as ``get_predictor``, with ``crop_tiles``.
    """
    import keras
    from keras import ops

    backend = keras.backend.backend()

    def tta_pass(call, x):
        total = shares = None
        for k in transforms:
            y = dihedral.ops_inverse(ops.cast(call(dihedral.ops_forward(x, k)), "float32"), k)
            total = y if total is None else total + y
            if votes:
                vote = ops.one_hot(ops.argmax(y, axis=-1), y.shape[-1], dtype="float32")
                shares = vote if shares is None else shares + vote
        total = total / float(len(transforms)) if len(transforms) > 1 else total
        if votes:
            return ops.concatenate([total, shares / float(len(transforms))], axis=-1)
        return total

    if backend == "jax":
        import jax

        trainable = [v.value for v in keras_model.trainable_variables]
        fixed = [v.value for v in keras_model.non_trainable_variables]

        def stateless(weights, state, x):
            return tta_pass(
                lambda t: keras_model.stateless_call(weights, state, t, training=False)[0], x
            )

        compiled = jax.jit(stateless)

        def run(x):
            return compiled(trainable, fixed, x)
    elif backend == "tensorflow":
        import tensorflow as tf

        channels = int(keras_model.inputs[0].shape[-1])
        run = tf.function(
            lambda x: tta_pass(lambda t: keras_model(t, training=False), x),
            input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)],
            reduce_retracing=True,
            autograph=False,
        )
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
            batch = np.concatenate([batch, np.zeros((size - n,) + batch.shape[1:], batch.dtype)])
        x = ops.convert_to_tensor(np.ascontiguousarray(batch, dtype=np.float32))
        return np.asarray(ops.convert_to_numpy(run(x)))[:n]

    predictor.crop_tiles = False
    return predictor
