"""The eight dihedral transforms of a square (rotations by quarter turns and flips).

One table, one convention, used by training augmentation and by test-time
augmentation alike. Transform ``k`` (0..7) flips the columns when ``k >= 4``,
then rotates by ``k % 4`` quarter turns in ``np.rot90``'s sense. Transform 0 is
the identity; ``inverse(forward(x, k), k) == x``.

The functions act on the two spatial axes that precede the last (channel) axis,
``(..., rows, cols, channels)``, in numpy, TensorFlow or Keras ops.
"""

from __future__ import annotations

import numpy as np

from .feedback import CoreError

#: k -> (flip the columns first, quarter turns after).
TRANSFORMS = tuple((k >= 4, k % 4) for k in range(8))

#: Test-time augmentation: the transforms averaged for TTA 1, 2, 4 and 8.
TTA_TRANSFORMS = {1: (0,), 2: (0, 4), 4: (0, 1, 2, 3), 8: tuple(range(8))}

#: Training augmentation draws a number ``d`` in 0..7 and applies transform
#: ``AUGMENT_ORDER[d]``: d % 4 quarter turns, then a column flip when d >= 4 (the
#: order the training sampler has always used, so a seed gives the same patches).
#: Rotating by m then flipping equals flipping then rotating by -m.
AUGMENT_ORDER = tuple(d if d < 4 else 4 + (-d) % 4 for d in range(8))


def tta_transforms(tta) -> tuple:
    """Return the transforms averaged for a TTA setting (1, 2, 4 or 8).

    Raises:
        CoreError: for any other value, naming the allowed ones.
    """
    try:
        return TTA_TRANSFORMS[int(tta)]
    except (KeyError, TypeError, ValueError):
        raise CoreError(
            f"TTA must be one of 1, 2, 4, 8 (dihedral transforms averaged); got {tta!r}."
        ) from None


def forward(array: np.ndarray, k: int) -> np.ndarray:
    """Apply transform ``k`` to the spatial axes of ``(..., rows, cols, channels)`` (a view)."""
    flip, turns = TRANSFORMS[k]
    axes = (array.ndim - 3, array.ndim - 2)
    if flip:
        array = np.flip(array, axis=axes[1])
    return np.rot90(array, turns, axes=axes)


def inverse(array: np.ndarray, k: int) -> np.ndarray:
    """Undo ``forward(., k)`` on ``(..., rows, cols, channels)``."""
    flip, turns = TRANSFORMS[k]
    axes = (array.ndim - 3, array.ndim - 2)
    array = np.rot90(array, -turns, axes=axes)
    if flip:
        array = np.flip(array, axis=axes[1])
    return array


def augment(array: np.ndarray, d: int) -> np.ndarray:
    """Training augmentation: transform ``AUGMENT_ORDER[d]`` of ``(rows, cols, ...)``.

    Args:
        array: a square patch whose first two axes are rows and columns (an image
            ``(rows, cols, bands)`` or a label map ``(rows, cols)``).
        d: 0..7, as drawn by the sampler.
    """
    if array.ndim == 2:
        return forward(array[..., None], AUGMENT_ORDER[d])[..., 0]
    if array.ndim == 3:
        return forward(array, AUGMENT_ORDER[d])
    raise ValueError(f"augment expects (rows, cols) or (rows, cols, channels), not {array.shape}")


def ops_forward(x, k: int):
    """``forward`` on a (batch, rows, cols, channels) tensor in Keras ops (any backend)."""
    from keras import ops

    flip, turns = TRANSFORMS[k]
    if flip:
        x = ops.flip(x, axis=2)
    return ops.rot90(x, turns, axes=(1, 2)) if turns else x


def ops_inverse(y, k: int):
    """``inverse`` on a (batch, rows, cols, channels) tensor in Keras ops (any backend)."""
    from keras import ops

    flip, turns = TRANSFORMS[k]
    if turns:
        y = ops.rot90(y, (4 - turns) % 4, axes=(1, 2))
    if flip:
        y = ops.flip(y, axis=2)
    return y


def tf_forward(x, k: int):
    """``forward`` on a (batch, rows, cols, channels) TensorFlow tensor."""
    import tensorflow as tf

    flip, turns = TRANSFORMS[k]
    if flip:
        x = tf.reverse(x, axis=[2])
    return tf.image.rot90(x, turns) if turns else x


def tf_inverse(y, k: int):
    """``inverse`` on a (batch, rows, cols, channels) TensorFlow tensor."""
    import tensorflow as tf

    flip, turns = TRANSFORMS[k]
    if turns:
        y = tf.image.rot90(y, (4 - turns) % 4)
    if flip:
        y = tf.reverse(y, axis=[2])
    return y
