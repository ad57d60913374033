"""Sample design and stratified estimators of accuracy and area (Olofsson et al. 2014).

Pure functions of small arrays, no I/O. Notation of Olofsson, Foody, Herold, Stehman,
Woodcock and Wulder (2014), "Good practices for estimating area and assessing accuracy
of land change", Remote Sensing of Environment 148: 42-57, with the strata being the
map classes: rows i are map classes, columns j reference classes; ``n[i, j]`` counts
sample points of map class i labelled j; ``n_i.`` is the sample size of stratum i;
``W_i`` is the share of the map's valid area mapped as class i; ``A_tot`` the map's
valid area. Confidence intervals are 95 % normal intervals (1.96 standard errors).
"""

from __future__ import annotations

import numpy as np

from ..feedback import CoreError
from ..schema.sampling import ALLOCATIONS

#: z of a two-sided 95 % normal interval.
Z95 = 1.96


def sample_size(weights, user_accuracies, target_se: float) -> int:
    """Total sample size for a target standard error of overall accuracy (eq. 13).

    n = (sum_i W_i S_i / S(O))^2 with S_i = sqrt(U_i (1 - U_i)) the standard deviation
    of stratum i for the expected user's accuracy U_i (Cochran 1977, eq. 5.25).

    Args:
        weights: W_i, mapped area proportions of the strata (sum 1).
        user_accuracies: expected U_i per stratum (one number for all, or one each).
        target_se: S(O), the wanted standard error of overall accuracy (e.g. 0.01).

    Returns:
        n, rounded up.
    """
    w = np.asarray(weights, dtype=np.float64)
    u = np.broadcast_to(np.asarray(user_accuracies, dtype=np.float64), w.shape)
    if np.any((u <= 0) | (u >= 1)):
        raise CoreError("EXPECTED_USER_ACCURACY values must lie between 0 and 1 (exclusive).")
    if not target_se > 0:
        raise CoreError("TARGET_STANDARD_ERROR must be above 0 (e.g. 0.01).")
    s = np.sqrt(u * (1 - u))
    return int(np.ceil(((w * s).sum() / target_se) ** 2 - 1e-9))


def _largest_remainder(total: int, shares: np.ndarray) -> np.ndarray:
    """Whole numbers in proportion to ``shares`` that sum to ``total`` (Hamilton's method)."""
    shares = np.asarray(shares, dtype=np.float64)
    if total <= 0 or shares.sum() <= 0:
        return np.zeros(shares.shape, dtype=np.int64)
    exact = total * shares / shares.sum()
    out = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - out), kind="stable")
    out[order[: total - int(out.sum())]] += 1
    return out


def allocate(pixels, total: int, method: str = "minimum_then_proportional", minimum: int = 50):
    """Points per stratum.

    ``proportional``: n_i proportional to W_i (largest remainders). ``equal``: n / K each.
    ``minimum_then_proportional``: min(``minimum``, N_i) each first (Olofsson et al. 2014,
    section 5.1.2: rare classes get enough points for their user's accuracy), the rest in
    proportion to W_i; when ``total`` cannot give every stratum ``minimum``, equal shares.
    No stratum gets more points than it has pixels (the surplus goes to the others).

    Args:
        pixels: N_i, mapped pixels per stratum (strata with 0 pixels get 0 points).
        total: n, the total sample size.
        method: one of ``ALLOCATIONS``.
        minimum: the minimum per stratum of ``minimum_then_proportional``.

    Returns:
        int64 array of n_i.
    """
    pixels = np.asarray(pixels, dtype=np.int64)
    present = pixels > 0
    k = int(present.sum())
    if method not in ALLOCATIONS:
        raise CoreError(f"ALLOCATION must be one of {', '.join(ALLOCATIONS)} (got {method!r}).")
    if total < 2 * k:
        raise CoreError(
            f"SAMPLE_SIZE {total} is too small for {k} mapped classes: every class needs at "
            f"least 2 points for its estimates; give at least {2 * k} (better "
            f"{50 * k}, 50 per class)."
        )
    total = min(int(total), int(pixels.sum()))
    if method == "proportional":
        out = _largest_remainder(total, pixels)
    elif method == "equal" or total < k * minimum:
        out = _largest_remainder(total, present.astype(np.float64))
    else:
        out = np.minimum(pixels, minimum)
        out = out + _largest_remainder(total - int(out.sum()), pixels)
    # More points than pixels: cap, and give the surplus to the strata with room.
    while np.any(out > pixels):
        surplus = int((out - pixels).clip(min=0).sum())
        out = np.minimum(out, pixels)
        room = pixels - out
        out = out + np.minimum(room, _largest_remainder(surplus, room))
    return out


def _interval(se):
    return None if se is None or not np.isfinite(se) else Z95 * float(se)


def stratified_estimates(counts, pixels, pixel_area: float = 1.0) -> dict:
    """Error matrix in area proportions, accuracies and class areas with 95 % intervals.

    Equations of Olofsson et al. (2014): p_ij = W_i n_ij / n_i. (eq. 4); overall
    accuracy O = sum_j p_jj (eq. 1) with V(O) = sum_i W_i^2 U_i (1 - U_i) / (n_i. - 1)
    (eq. 5); user's accuracy U_i = p_ii / p_i. (eq. 2) with V(U_i) = U_i (1 - U_i) /
    (n_i. - 1) (eq. 6); producer's accuracy P_j = p_jj / p_.j (eq. 3) with V(P_j) of
    eq. 7; area proportion p_.k = sum_i W_i n_ik / n_i. (eq. 9) with
    SE(p_.k) = sqrt(sum_i W_i^2 (n_ik/n_i.)(1 - n_ik/n_i.) / (n_i. - 1)) (eq. 10);
    area A_k = A_tot p_.k and SE(A_k) = A_tot SE(p_.k) (eq. 11).

    A stratum with fewer than 2 points has no variance: its class gets no user's or
    producer's accuracy and no estimated area, and the estimation domain becomes the
    other strata (W renormalised over them, A_tot their area); ``excluded`` names it.
    A class mapped nowhere has no user's accuracy; its producer's accuracy is 0 and its
    area comes from the other strata. Intervals are the normal approximation of the
    paper (U +/- 1.96 SE), not clipped to [0, 1].

    Args:
        counts: (K, K) sample counts, rows = map class (stratum), columns = reference.
        pixels: (K,) N_i, mapped pixels of each class over the map's valid area.
        pixel_area: area of one pixel in the unit areas are wanted in (e.g. ha).

    Returns:
        dict: ``proportions`` (K, K) p_ij; ``overall_accuracy`` and ``overall_accuracy_ci95``;
        per class lists ``users_accuracy``, ``users_accuracy_ci95``,
        ``producers_accuracy``, ``producers_accuracy_ci95``, ``mapped_area``,
        ``estimated_area``, ``estimated_area_se``, ``estimated_area_ci95`` (None where
        impossible); ``excluded`` (stratum indices with < 2 points but mapped pixels);
        ``domain_area``.
    """
    n = np.asarray(counts, dtype=np.float64)
    big_n = np.asarray(pixels, dtype=np.float64)
    k = n.shape[0]
    n_i = n.sum(axis=1)
    excluded = [i for i in range(k) if big_n[i] > 0 and n_i[i] < 2]
    use = (big_n > 0) & (n_i >= 2)
    if not use.any():
        raise CoreError(
            "No map class has 2 or more sample points with a reference label: nothing can "
            "be estimated. Label the sample points (REFERENCE_FIELD) and run again."
        )
    n_d = np.where(use[:, None], n, 0.0)
    big_n_d = np.where(use, big_n, 0.0)
    a_tot = big_n_d.sum() * pixel_area
    w = big_n_d / big_n_d.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(use[:, None], n_d / n_i[:, None], 0.0)  # n_ij / n_i.
        p = w[:, None] * frac
        var_weight = np.where(use, 1.0 / (n_i - 1), 0.0)  # 1 / (n_i. - 1)
        users = np.where(use, np.diag(frac), np.nan)
        users_var = users * (1 - users) * var_weight
        oa = float(np.trace(p))
        oa_var = float(np.nansum(w**2 * users * (1 - users) * var_weight))
        ref_total = (big_n_d[:, None] * frac).sum(axis=0)  # N_.j, estimated pixels of j
        p_col = p.sum(axis=0)
        producers = np.where(p_col > 0, np.diag(p) / p_col, np.nan)
        area_var = (w[:, None] ** 2 * frac * (1 - frac) * var_weight[:, None]).sum(axis=0)
    # A class mapped nowhere but found by the reference: P_j = 0 (p_jj = 0), eq. 7 applies.
    has_pa = use | (big_n == 0)
    producers_var = np.full(k, np.nan)
    for j in range(k):
        if not has_pa[j] or ref_total[j] <= 0:
            continue
        others = sum(
            big_n_d[i] ** 2 * frac[i, j] * (1 - frac[i, j]) * var_weight[i]
            for i in range(k)
            if i != j
        )
        own = big_n_d[j] ** 2 * (1 - producers[j]) ** 2 * users_var[j] if use[j] else 0.0
        producers_var[j] = (own + producers[j] ** 2 * others) / ref_total[j] ** 2

    def value(x, ok=True):
        return float(x) if ok and np.isfinite(x) else None

    est_area = [value(a_tot * p_col[j], use[j] or big_n[j] == 0) for j in range(k)]
    area_se = [value(a_tot * np.sqrt(area_var[j]), est_area[j] is not None) for j in range(k)]
    return {
        "proportions": p,
        "overall_accuracy": oa,
        "overall_accuracy_ci95": _interval(np.sqrt(oa_var)),
        "users_accuracy": [value(users[i], use[i]) for i in range(k)],
        "users_accuracy_ci95": [
            _interval(np.sqrt(users_var[i])) if use[i] else None for i in range(k)
        ],
        "producers_accuracy": [value(producers[j], has_pa[j]) for j in range(k)],
        "producers_accuracy_ci95": [
            _interval(np.sqrt(producers_var[j])) if has_pa[j] else None for j in range(k)
        ],
        "mapped_area": [float(v) * pixel_area for v in big_n],
        "estimated_area": est_area,
        "estimated_area_se": area_se,
        "estimated_area_ci95": [_interval(se) for se in area_se],
        "excluded": excluded,
        "domain_area": float(a_tot),
    }
