"""Where and how reproducibly training runs: the device strategy and the seeds.

``device_strategy`` trains data-parallel when several devices are used and in
mixed precision on GPUs; ``seeded`` seeds Python, numpy and Keras and can make
TensorFlow's ops deterministic. Both restore what they change, so later jobs
in the same worker process are unaffected. TensorFlow is imported inside them.
"""

from __future__ import annotations

import contextlib
import os

from ..feedback import Feedback

#: Environment variable naming the devices to train on, e.g. "/cpu:0,/cpu:1" (tests) or
#: "/gpu:0,/gpu:1"; unset = every visible GPU (MirroredStrategy when there are several).
DEVICES_ENV = "WETLAND_UNET_DEVICES"


@contextlib.contextmanager
def device_strategy(feedback: Feedback):
    """Build and train under ``tf.distribute.MirroredStrategy`` when several devices are used.

    Several visible GPUs (or the devices listed in $WETLAND_UNET_DEVICES) give data-parallel
    training: each batch is split across the replicas and gradients are summed. On a GPU,
    the mixed_float16 policy is used (the output layer stays float32); the previous Keras
    policy is restored afterwards, so later jobs in the worker are unaffected.

    Yields:
        The number of replicas (1 when no strategy is used).
    """
    import keras
    import tensorflow as tf

    listed = [d.strip() for d in os.environ.get(DEVICES_ENV, "").split(",") if d.strip()]
    gpus = tf.config.list_logical_devices("GPU")
    devices = listed or [d.name for d in gpus]
    previous_policy = keras.config.dtype_policy()
    if gpus:
        keras.config.set_dtype_policy("mixed_float16")
        feedback.info(f"GPU training with mixed precision (mixed_float16) on {len(gpus)} GPU(s).")
    try:
        if len(devices) > 1:
            strategy = tf.distribute.MirroredStrategy(devices=devices)
            feedback.info(
                f"Data-parallel training (MirroredStrategy) on {len(devices)} devices: "
                + ", ".join(devices)
            )
            with strategy.scope():
                yield strategy.num_replicas_in_sync
        else:
            yield 1
    finally:
        keras.config.set_dtype_policy(previous_policy)


@contextlib.contextmanager
def seeded(seed: int, deterministic: bool):
    """Seed Python, numpy and Keras; optionally make TensorFlow ops deterministic.

    Op determinism (same seed, same weights on CPU) is switched back off
    afterwards when it was off before, so later jobs in the worker run at full speed.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    try:
        from tensorflow.python.framework import config as tf_config

        was = tf_config.is_op_determinism_enabled()
        disable = tf_config.disable_op_determinism
    except (ImportError, AttributeError):  # private API moved: leave it on
        was, disable = True, None
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if deterministic and not was and disable is not None:
            disable()
