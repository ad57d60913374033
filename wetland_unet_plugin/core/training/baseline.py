"""The built-in baseline: a random forest on the U-Net's own training and validation pixels.

Users know random forests; the report says whether the U-Net was worth it. The forest
(scikit-learn) learns from a class-balanced sample of labelled pixels of the same
training patches the U-Net starts from (stream ``TRAIN_STREAM``, no augmentation),
with each pixel's band values and their 3x3 and 7x7 local means as features (the idea
of ``benchmarks/bench_quality.py``'s anchor), and is scored on the same validation
patches as the U-Net, both on the same pixels. Pixels and trees are capped so it takes
seconds.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from ..feedback import Feedback
from ..metrics import confusion_matrix, scores
from .patches import TRAIN_STREAM

#: Caps: pixels of training patches read, training pixels per class, trees.
MAX_TRAIN_PATCH_PIXELS = 400_000
PIXELS_PER_CLASS = 4_000
TREES = 40
#: Labelled validation pixels both models are scored on (the first validation patches).
MAX_VAL_PIXELS = 200_000
#: Mean IoU difference below which the two are called about as good.
TIE = 0.005
METHOD = (
    f"random forest (scikit-learn, {TREES} trees) on each pixel's band values and their "
    "3x3 and 7x7 means"
)


def pixel_features(x: np.ndarray) -> np.ndarray:
    """(b, s, s, bands) patches -> (b, s, s, 3 * bands): values, 3x3 and 7x7 means."""
    from scipy.ndimage import uniform_filter

    means = [uniform_filter(x, size=(1, k, k, 1), mode="reflect") for k in (3, 7)]
    return np.concatenate([x, *means], axis=-1)


def fit_baseline(sampler, n_classes: int, batch_size: int, train_size: int, seed: int):
    """Train the forest on a class-balanced sample of the training patches' pixels.

    Args:
        sampler: the run's ``patches.PatchSampler``.
        n_classes: N (labels 1..N, 0 unlabelled).
        batch_size, train_size: the run's batch size and training patches per epoch.
        seed: the run's seed (the forest and the sample are seeded with it).

    Returns:
        (forest, training pixels used), or (None, 0) without labelled pixels.
    """
    from sklearn.ensemble import RandomForestClassifier

    count = max(1, min(train_size, MAX_TRAIN_PATCH_PIXELS // sampler.patch_size**2))
    features, labels = [], []
    for x, y in sampler.batches("train", batch_size, count, TRAIN_STREAM):
        keep = y > 0
        features.append(pixel_features(x)[keep])
        labels.append(y[keep])
    features, labels = np.concatenate(features), np.concatenate(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(1, n_classes + 1):
        where = np.flatnonzero(labels == c)
        if where.size > PIXELS_PER_CLASS:
            where = rng.choice(where, PIXELS_PER_CLASS, replace=False)
        chosen.append(where)
    chosen = np.concatenate(chosen)
    if chosen.size == 0:
        return None, 0
    forest = RandomForestClassifier(
        n_estimators=TREES,
        min_samples_leaf=2,
        n_jobs=min(4, os.cpu_count() or 1),
        random_state=int(seed) % 2**32,
    )
    forest.fit(features[chosen], labels[chosen])
    return forest, int(chosen.size)


class BaselineScorer:
    """Scores the forest and the U-Net side by side on the first validation patches.

    Call ``add`` with every validation batch and the U-Net's class ids; batches after
    ``MAX_VAL_PIXELS`` labelled pixels are left out for both.
    """

    def __init__(self, forest, n_classes: int):
        self.forest, self.n_classes = forest, n_classes
        self.unet = np.zeros((n_classes, n_classes), np.int64)
        self.forest_matrix = np.zeros((n_classes, n_classes), np.int64)
        self.pixels, self.seconds = 0, 0.0

    def add(self, x: np.ndarray, labels: np.ndarray, unet_prediction: np.ndarray) -> None:
        if self.pixels >= MAX_VAL_PIXELS:
            return
        keep = labels > 0
        if not keep.any():
            return
        start = time.perf_counter()
        guess = np.zeros(labels.shape, np.int64)
        guess[keep] = self.forest.predict(pixel_features(x)[keep])
        confusion_matrix(labels, guess, self.n_classes, self.forest_matrix)
        confusion_matrix(labels, unet_prediction, self.n_classes, self.unet)
        self.pixels += int(keep.sum())
        self.seconds += time.perf_counter() - start

    def result(self, train_pixels: int, seconds: float) -> dict:
        """The metadata's ``baseline`` entry, with the comparison in one sentence.

        Args:
            train_pixels: pixels the forest learnt from.
            seconds: time spent fitting it (scoring time is added).
        """
        unet, forest = scores(self.unet), scores(self.forest_matrix)
        diff = unet["mean_iou"] - forest["mean_iou"]
        if not math.isfinite(diff):
            better, verdict = "unknown", "The comparison has no validation pixels."
        else:
            better = "tie" if abs(diff) < TIE else "unet" if diff > 0 else "random_forest"
            verdict = {
                "tie": "The U-Net and the random forest are about as good",
                "unet": "The U-Net is better than the random forest",
                "random_forest": "The random forest is better than the U-Net",
            }[better] + (
                f" on the same {self.pixels:,} validation pixels: mean IoU "
                f"{unet['mean_iou']:.3f} (U-Net) vs {forest['mean_iou']:.3f} (random forest), "
                f"overall accuracy {unet['overall_accuracy']:.3f} vs "
                f"{forest['overall_accuracy']:.3f}."
            )
            if better == "random_forest":
                verdict += (
                    " Train longer (EPOCHS, TIME_LIMIT) or check MODEL_SIZE; if the classes "
                    "differ by their spectra alone, a pixel classifier may be enough."
                )
        return {
            "method": METHOD,
            "train_pixels": train_pixels,
            "val_pixels": self.pixels,
            "unet": unet,
            "random_forest": forest,
            "better": better,
            "summary": verdict,
            "time_s": round(seconds + self.seconds, 2),
        }


def start_baseline(p: dict, data, n_classes: int, feedback: Feedback):
    """Fit the forest when BASELINE is on; (scorer or None, training pixels, seconds)."""
    if not p["baseline"]:
        return None, 0, 0.0
    start = time.perf_counter()
    try:
        forest, pixels = fit_baseline(
            data.sampler, n_classes, p["batch_size"], p["train_size"], data.seed
        )
    except ImportError:
        feedback.warning(
            "BASELINE skipped: scikit-learn is not installed in the worker's environment "
            "(repair it with 'Install or repair the TensorFlow worker')."
        )
        return None, 0, 0.0
    if forest is None:
        return None, 0, 0.0
    return BaselineScorer(forest, n_classes), pixels, time.perf_counter() - start
