"""The U-Net model (Keras 3), fully convolutional.

The seed's architecture at the defaults (FILTERS 32, DEPTH 5: 32 to 1024 filters),
with batch normalisation, dropout and transposed-convolution upsampling, and a
spectral skip (on by default): the image's own band values join the last
decoder level and a 1x1 head, so a pixel whose spectrum differs from its
neighbours' can keep its own class instead of being smoothed into theirs.
"""

from __future__ import annotations


def _conv_block(x, filters: int, dropout: float, name: str):
    from keras import layers

    for i in (1, 2):
        x = layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=f"{name}_conv{i}",
        )(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    if dropout > 0:
        x = layers.SpatialDropout2D(dropout, name=f"{name}_drop")(x)
    return x


def build_unet(
    n_bands: int,
    n_classes: int,
    filters: int = 32,
    depth: int = 5,
    dropout: float = 0.1,
    activation: str = "softmax",
    spectral_skip: bool = True,
):
    """Build a U-Net.

    Args:
        n_bands: input channels.
        n_classes: output channels (one per class).
        filters: filters of the first level; each level down doubles them.
        depth: number of down-sampling steps; tiles must be multiples of 2**depth.
        dropout: spatial dropout rate after each block (deeper blocks get more).
        activation: "softmax" (one class per pixel) or "sigmoid" (multi-label).
        spectral_skip: concatenate the input bands to the last decoder level and, with
            its output, feed a 1x1 convolution of ``filters`` units before the logits:
            per-pixel spectra reach the classifier without the 3x3 convolutions' spatial
            mixing. On the Sentinel-2 quality benchmark (same 9 minutes, paired seeds)
            it moved held-out OA by +0.3, 0.0 and +0.2 points (mIoU +0.7, -0.1, +0.5),
            mostly on class-boundary pixels. The extra work is a 1x1 convolution per
            pixel.

    Returns:
        An uncompiled ``keras.Model`` taking (None, None, n_bands) float32 inputs and
        returning (None, None, n_classes) probabilities (float32 even under mixed precision).
    """
    import keras
    from keras import layers

    if depth < 1:
        raise ValueError("depth must be at least 1")
    inputs = keras.Input(shape=(None, None, n_bands), name="image")
    x = inputs
    skips = []
    for level in range(depth):
        x = _conv_block(
            x, filters * 2**level, dropout if level >= depth - 2 else 0.0, f"down{level}"
        )
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _conv_block(x, filters * 2**depth, dropout, "bridge")
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(
            filters * 2**level, 2, strides=2, padding="same", name=f"up{level}_tconv"
        )(x)
        joined = [x, skips[level]] + ([inputs] if spectral_skip and level == 0 else [])
        x = layers.Concatenate(name=f"up{level}_concat")(joined)
        x = _conv_block(x, filters * 2**level, 0.0, f"up{level}")
    if spectral_skip:
        x = layers.Concatenate(name="spectral_concat")([x, inputs])
        x = layers.Conv2D(filters, 1, activation="relu", name="spectral_head")(x)
    x = layers.Conv2D(n_classes, 1, name="logits")(x)
    outputs = layers.Activation(activation, dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"unet_f{filters}_d{depth}")


def tile_multiple(depth: int) -> int:
    """Tiles and patches must be a multiple of this (2**depth)."""
    return 2 ** int(depth)


def receptive_margin(depth: int) -> int:
    """Pixels of context per side the model needs for a stable prediction.

    A rough but safe estimate of the receptive field's half-width: two 3x3 convs
    per level, each level doubling the stride.
    """
    return int(sum(2 * 2**level for level in range(depth + 1)) * 2)
