"""The tf.data pipeline Keras trains on: batches of (x, one-hot y, per-pixel weight).

TensorFlow is imported inside ``make_dataset``, not when this module is.
"""

from __future__ import annotations

from ..normalize import check_finite
from .patches import TRAIN_STREAM, PatchSampler


def make_dataset(
    sampler: PatchSampler,
    region: str,
    batch_size: int,
    n_classes: int,
    class_weights,
    count: int | None = None,
    stream: int = TRAIN_STREAM,
    augment: bool = False,
    workers: int | None = None,
):
    """A tf.data pipeline of (x, one-hot y, per-pixel weight) batches for Keras.

    Label 0 (unlabelled, or invalid input) gets weight 0 and an all-zero target;
    class c gets ``class_weights[c - 1]``.

    Args:
        sampler: the patch sampler.
        region: "train" or "val".
        batch_size: patches per batch.
        n_classes: N.
        class_weights: N weights.
        count: patches in all (None: endless).
        stream: patch stream.
        augment: dihedral augmentation.
        workers: reader threads.

    Returns:
        A prefetching ``tf.data.Dataset``.
    """
    import tensorflow as tf

    size = sampler.patch_size
    n_bands = len(sampler.sources[0].bands)
    table = tf.constant([0.0] + [float(w) for w in class_weights], tf.float32)

    def generate():
        for x, labels in sampler.batches(region, batch_size, count, stream, augment, workers):
            yield check_finite(x, "training patches"), labels

    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec((None, size, size, n_bands), tf.float32),
            tf.TensorSpec((None, size, size), tf.uint8),
        ),
    )

    def to_targets(x, labels):
        ids = tf.cast(labels, tf.int32)
        y = tf.one_hot(ids - 1, n_classes, dtype=tf.float32)  # label 0 -> all zeros
        return x, y, tf.gather(table, ids)

    batches = tf.data.INFINITE_CARDINALITY if count is None else -(-count // batch_size)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    return dataset.map(to_targets).prefetch(tf.data.AUTOTUNE)
