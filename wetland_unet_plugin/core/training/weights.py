"""Class weights of the loss (CLASS_WEIGHTS): given numbers, "equal", or "auto".

"auto" gives rare classes their share once: when the sampler draws class-balanced
patches the loss weighs the classes equally; when BALANCE_CLASSES is off, the loss
uses median-frequency balancing over the labelled pixels of a sample of training
patches. When BALANCE_CLASSES auto found no rare class, the weights are equal too
(median-frequency weights scored 1.4 points lower there, docs/quality.md). Balancing
both ways cost the majority class 5 to 7 points of recall on the quality benchmark.
The weights and how they were found are written to the model's metadata.
"""

from __future__ import annotations

import math

import numpy as np

from ..classes import parse_float_list
from ..feedback import CoreError, Feedback
from .patches import PROBE_STREAM, PatchSampler

#: Auto class weights are clipped to this range.
WEIGHT_CLIP = (0.1, 10.0)
#: Training patches counted to estimate class frequencies for auto weights.
PROBE_PATCHES = 256


def auto_weights_formula(n_patches: int, balance: str = "off", balanced: bool = False) -> str:
    """The formula of auto class weights, as written in the metadata and report.

    Args:
        n_patches: training patches counted for the frequencies.
        balance: BALANCE_CLASSES as asked ("auto", "on" or "off").
        balanced: whether the patches are class-balanced.
    """
    if balanced:
        return (
            "equal: the training patches are class-balanced (BALANCE_CLASSES), which "
            "gives rare classes their share already (with BALANCE_CLASSES off, auto uses "
            "median-frequency balancing)"
        )
    if balance == "auto":
        return (
            "equal: BALANCE_CLASSES auto found no rare class, so patches come in "
            "proportion to the classes' pixels and no class needs a larger weight"
        )
    return (
        f"median-frequency balancing: w_c = median(f) / f_c, where f_c is the share of "
        f"class c among the labelled pixels of {n_patches} sampled training patches "
        f"(median over the classes present), clipped to [{WEIGHT_CLIP[0]:g}, "
        f"{WEIGHT_CLIP[1]:g}]; a class absent from the training patches gets 1"
    )


def auto_class_weights(counts, clip=WEIGHT_CLIP) -> list:
    """Median-frequency balancing weights from pixel counts per class.

    Args:
        counts: (N,) labelled pixels per class (classes 1..N).
        clip: (low, high) bounds of the weights.

    Returns:
        N floats; classes with no pixels get 1.0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    if not present.any():
        return [1.0] * len(counts)
    freq = counts / counts.sum()
    median = float(np.median(freq[present]))
    with np.errstate(divide="ignore"):
        weights = np.where(present, median / np.where(present, freq, 1.0), 1.0)
    return [float(w) for w in np.clip(weights, clip[0], clip[1])]


def parse_class_weights(spec, n_classes: int):
    """Parse CLASS_WEIGHTS: "auto" (None returned), "equal", or N numbers.

    Raises:
        CoreError: for a wrong count, negative numbers or all zeros.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "auto")):
        return None
    if isinstance(spec, str) and spec.strip().lower() in ("equal", "none", "1"):
        return [1.0] * n_classes
    values = parse_float_list(spec, "CLASS_WEIGHTS")
    if len(values) != n_classes:
        raise CoreError(
            f"CLASS_WEIGHTS has {len(values)} numbers but there are {n_classes} "
            "classes: give one weight per class name, in the same order, or "
            "'auto'."
        )
    if any(not math.isfinite(v) or v < 0 for v in values) or not any(v > 0 for v in values):
        raise CoreError(
            "CLASS_WEIGHTS must be finite numbers >= 0, at least one above 0 (or 'auto')."
        )
    return [float(v) for v in values]


def choose_class_weights(
    sampler: PatchSampler,
    explicit: list | None,
    train_size: int,
    names: list,
    feedback: Feedback,
    balance: str | None = None,
) -> tuple[list, dict]:
    """The loss's class weights: ``explicit`` when given, else auto weights:
    median-frequency weights from a probe when BALANCE_CLASSES is off, else equal.

    Args:
        sampler: the patch sampler (auto counts the labels of min(train_size,
            PROBE_PATCHES) training patches of the probe stream: the frequencies, and
            the weights when it does not balance classes).
        explicit: weights from ``parse_class_weights``, or None for auto.
        train_size: training patches per epoch.
        names: class names.
        feedback: messages.
        balance: BALANCE_CLASSES as asked ("auto", "on" or "off"); None: as the
            sampler draws ("on" when it balances classes, else "off").

    Returns:
        (weights, info): N floats, and the metadata's description of them
        (method, formula, values and, for auto weights, class frequencies).
    """
    if explicit is None:
        n_probe = min(train_size, PROBE_PATCHES)
        counts = sampler.label_counts("train", n_probe, PROBE_STREAM)[1:]
        balance = balance or ("on" if sampler.balance else "off")
        frequency = balance == "off"  # off: the sampler draws in proportion
        weights = auto_class_weights(counts) if frequency else [1.0] * len(counts)
        info = {
            "method": "auto",
            "formula": auto_weights_formula(n_probe, balance, sampler.balance),
            "values": weights,
            "frequencies": [float(c) / max(1, counts.sum()) for c in counts],
        }
        if sampler.balance:
            info["note"] = "equal, the patches are class-balanced"
        elif not frequency:
            info["note"] = "equal, no class is rare"
        absent = [names[i] for i, c in enumerate(counts) if c == 0]
        if absent:
            feedback.warning(
                f"Class(es) {', '.join(absent)} have no labelled pixels in the "
                "training patches; the model cannot learn them."
            )
    else:
        weights = explicit
        info = {"method": "explicit", "formula": "given by CLASS_WEIGHTS", "values": weights}
    feedback.info(
        "Class weights: "
        + ", ".join(f"{n} {w:.3g}" for n, w in zip(names, weights))
        + f" ({info['method']}"
        + (f": {info['note']})." if "note" in info else ").")
    )
    return weights, info
