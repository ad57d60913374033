"""The data side of a training run, from split pairs to a ready patch sampler.

In order: one windowed pass over each mask (``masks.scan_mask``), the labels
checked where training and validation need them, normalisation statistics from
a sample of every image (kept from INIT_MODEL when fine-tuning), a patch
source per pair (cached whole while the cache limit allows) and the sampler.
Every random choice comes from one generator seeded with the run's seed, in
this order, so a seed gives the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..feedback import Feedback, SubFeedback
from .masks import check_labels, scan_mask
from .patches import PatchSampler, PatchSource, build_sources, resolve_balance
from .statistics import sample_normalization

# Share of this stage's progress before each step.
_SCAN, _STATS, _CACHE, _END = 0.0, 0.4, 0.6, 0.9


@dataclass
class TrainingData:
    """The prepared data of a training run."""

    pairs: list  # pairs.PairInfo, split into training and validation parts
    bands: list  # 1-based input bands
    scans: list  # masks.MaskScan per pair
    stats: dict  # normalisation statistics
    invalid_shares: list  # per pair: share of invalid pixels in the sampled windows
    sources: list  # patches.PatchSource per pair
    sampler: PatchSampler
    seed: int  # the seed used (drawn at random when SEED was not given)
    balance: dict  # BALANCE_CLASSES as used (``patches.resolve_balance``)


def draw_seed(seed) -> int:
    """The run's seed: SEED when given, else a random one (recorded in the metadata)."""
    return seed if seed is not None else int(np.random.SeedSequence().entropy % 2**31)


def scan_masks(
    pairs: list,
    bands: list,
    n_classes: int,
    rng: np.random.Generator,
    cache_limit_mb: float,
    feedback: Feedback,
) -> list:
    """Scan every mask; keep the labels of the images whose cache fits, in order."""
    budget = cache_limit_mb * 1e6
    scans = []
    for i, pair in enumerate(pairs):
        need = PatchSource.cache_bytes(pair, len(bands))
        keep = need <= budget
        budget -= need if keep else 0
        sub = SubFeedback(feedback, i / len(pairs), (i + 1) / len(pairs))
        scans.append(scan_mask(pair, n_classes, rng, keep, sub))
    return scans


def prepare_data(
    pairs: list, bands: list, n_classes: int, p: dict, init_meta: dict | None, feedback: Feedback
) -> TrainingData:
    """Scan the masks, compute the statistics, open the sources and make the sampler.

    Args:
        pairs: the checked pairs, split (``pairs.split_pairs``).
        bands: 1-based input bands.
        n_classes: N.
        p: the run's parameters (seed, cache_limit_mb, patch_size,
            min_labelled_fraction, balance_classes, augment, jitter).
        init_meta: INIT_MODEL's metadata when fine-tuning (its statistics are kept).
        feedback: progress (0..1 of this stage) and cancel.

    Raises:
        CoreError: for masks without labels where needed, or images without valid pixels.
    """
    seed = draw_seed(p["seed"])
    rng = np.random.default_rng(seed)
    scans = scan_masks(
        pairs, bands, n_classes, rng, p["cache_limit_mb"], SubFeedback(feedback, _SCAN, _STATS)
    )
    check_labels(pairs, scans)
    stats, invalid_shares = sample_normalization(
        pairs, bands, rng, SubFeedback(feedback, _STATS, _CACHE)
    )
    if init_meta is not None:
        stats = init_meta["normalization"]
    sources = build_sources(
        pairs,
        scans,
        bands,
        stats,
        n_classes,
        p["cache_limit_mb"],
        SubFeedback(feedback, _CACHE, _END),
    )
    balance = resolve_balance(p["balance_classes"], scans, n_classes)
    sampler = PatchSampler(
        sources,
        n_classes,
        p["patch_size"],
        p["min_labelled_fraction"],
        balance["balanced"],
        seed,
        jitter=p["jitter"] if p["augment"] else 0.0,
    )
    return TrainingData(pairs, bands, scans, stats, invalid_shares, sources, sampler, seed, balance)
