"""The quality benchmark's error breakdown, on hand-built class maps."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import bench_quality


def test_error_breakdown_counts_interior_boundary_and_speckle_pixels():
    # 6 x 6 reference: left half class 1, right half class 2, one class-3 speckle at (1, 1).
    reference = np.ones((6, 6), np.uint8)
    reference[:, 3:] = 2
    reference[1, 1] = 3
    # Interior by hand: class 1 pixels away from column 2 and from the speckle's ring;
    # edges repeat themselves, so (0, 0) has the speckle as a neighbour and is boundary.
    interior = np.zeros((6, 6), bool)
    interior[3:, :2] = True  # rows 3-5, columns 0-1 (no speckle, no column 3)
    interior[:, 4:] = True  # class 2 columns 4-5
    prediction = reference.copy()
    prediction[1, 1] = 1  # the speckle missed: an error on a speckle pixel
    prediction[4, 2] = 2  # a boundary pixel (column 2 touches class 2)
    prediction[5, 5] = 1  # an interior pixel
    result = bench_quality.error_breakdown([(reference, prediction)])

    assert result["errors"] == 3
    assert result["interior"]["pixels"] == interior.sum() == 18
    assert result["boundary"]["pixels"] == 36 - 18
    assert result["speckle"]["pixels"] == 1
    assert result["interior"]["errors"] == 1
    assert result["boundary"]["errors"] == 2
    assert result["speckle"]["errors"] == 1
    assert result["speckle"]["accuracy"] == 0.0
    assert abs(result["boundary"]["share_of_errors"] - 2 / 3) < 1e-12
    assert abs(result["interior"]["accuracy"] - 17 / 18) < 1e-12


def test_error_breakdown_ignores_unlabelled_pixels():
    reference = np.array([[0, 0, 0], [0, 1, 1], [0, 1, 1]], np.uint8)
    prediction = np.array([[4, 4, 4], [4, 1, 2], [4, 1, 1]], np.uint8)
    result = bench_quality.error_breakdown([(reference, prediction)])
    assert result["errors"] == 1
    assert result["interior"]["pixels"] + result["boundary"]["pixels"] == 4
    # By hand, edges repeated: (1, 1) has 3 class-1 neighbours, (1, 2) and (2, 1) 5,
    # (2, 2) all 8 (its outside neighbours repeat class-1 pixels). Unlabelled pixels are
    # neither scored nor counted, whatever the prediction says there.
    assert result["interior"]["pixels"] == 1
    assert result["boundary"]["pixels"] == 3
    assert result["boundary"]["errors"] == 1  # (1, 2) predicted 2
    assert result["speckle"]["pixels"] == 0
