"""Accuracy assessment: exact metrics on a hand-built confusion matrix, unlabelled pixels,
realigned references, class names, errors. No TensorFlow needed."""

from __future__ import annotations

import csv
import json
import zipfile

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from wetland_unet_plugin.core import evaluate as E  # noqa: N812 (short: used on every line)
from wetland_unet_plugin.core.feedback import CoreError
from wetland_unet_plugin.core.modelfile import FORMAT_NAME, FORMAT_VERSION, METADATA_ENTRY

CRS = "EPSG:32633"
X0, Y0 = 500000.0, 5800000.0

#: Hand-written confusion matrix: rows = reference class 1..3, columns = predicted 1..3.
MATRIX = np.array([[50, 3, 2], [5, 30, 5], [0, 4, 20]])


def write(path, array, res=10.0, nodata=None, x0=X0, y0=Y0, tags=None, crs=CRS):
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[2],
        height=array.shape[1],
        count=array.shape[0],
        dtype=array.dtype,
        crs=crs,
        nodata=nodata,
        transform=from_origin(x0, y0, res, res),
    ) as dst:
        dst.write(array)
        if tags:
            dst.update_tags(**tags)
    return str(path)


def pairs_from_matrix(matrix, rng):
    """Reference and prediction ids whose confusion matrix is ``matrix``, shuffled."""
    ref, pred = [], []
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ref += [i + 1] * int(matrix[i, j])
            pred += [j + 1] * int(matrix[i, j])
    order = rng.permutation(len(ref))
    return np.array(ref)[order], np.array(pred)[order]


@pytest.fixture
def hand_built(tmp_path):
    """A 10 x 13 scene: 119 labelled pairs as MATRIX, 11 pixels that must be ignored."""
    rng = np.random.default_rng(0)
    ref, pred = pairs_from_matrix(MATRIX, rng)
    ref = list(ref) + [0] * 4 + [255] * 4 + [2, 3, 1]  # unlabelled (0 and nodata 255) ...
    pred = list(pred) + [1, 2, 3, 1] + [3, 3, 2, 1] + [0, 0, 0]  # ... and no prediction (0)
    ref = np.array(ref, np.uint8).reshape(10, 13)
    pred = np.array(pred, np.uint8).reshape(10, 13)
    return (
        write(tmp_path / "pred.tif", pred, nodata=0),
        write(tmp_path / "ref.tif", ref, nodata=255),
        ref,
        pred,
    )


def test_exact_metrics_on_hand_built_matrix(tmp_path, hand_built, monkeypatch):
    monkeypatch.setattr(E, "WINDOW_ROWS", 3)  # stream over several windows
    pred, ref, _, _ = hand_built
    html_path, csv_path = tmp_path / "r.html", tmp_path / "m.csv"
    result = E.evaluate_map(
        pred, ref, str(html_path), str(csv_path), class_names="water,wetland,forest"
    )
    assert result["matrix"] == MATRIX.tolist()
    n = 119
    assert result["pixels"] == n
    assert result["overall_accuracy"] == pytest.approx((50 + 30 + 20) / n, abs=1e-12)
    # kappa by hand: row totals 55, 40, 24; column totals 55, 37, 27
    pe = (55 * 55 + 40 * 37 + 24 * 27) / n**2
    po = 100 / n
    assert result["kappa"] == pytest.approx((po - pe) / (1 - pe), abs=1e-12)
    iou = [50 / (55 + 55 - 50), 30 / (40 + 37 - 30), 20 / (24 + 27 - 20)]
    assert result["iou"] == pytest.approx(iou, abs=1e-12)
    assert result["mean_iou"] == pytest.approx(sum(iou) / 3, abs=1e-12)
    assert result["precision"] == pytest.approx([50 / 55, 30 / 37, 20 / 27], abs=1e-12)
    assert result["recall"] == pytest.approx([50 / 55, 30 / 40, 20 / 24], abs=1e-12)
    assert result["f1"][1] == pytest.approx(2 * 30 / (40 + 37), abs=1e-12)
    assert result["support"] == [55, 40, 24]
    assert result["class_names"] == ["water", "wetland", "forest"]

    rows = list(csv.reader(open(csv_path, encoding="utf-8")))
    assert rows[0][:4] == ["reference \\ predicted", "water", "wetland", "forest"]
    assert [r[0] for r in rows[1:4]] == ["water", "wetland", "forest"]
    assert [[int(v) for v in r[1:4]] for r in rows[1:4]] == MATRIX.tolist()
    metrics = {r[0]: r[1] for r in rows if len(r) == 2}
    assert float(metrics["overall_accuracy"]) == pytest.approx(100 / n, abs=1e-6)
    assert float(metrics["kappa"]) == pytest.approx(result["kappa"], abs=1e-6)

    page = html_path.read_text(encoding="utf-8")
    assert "data:image/png;base64," in page and "<script" not in page
    assert "wetland" in page and f"{100 / n:.4f}" in page and f"{result['kappa']:.4f}" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "pred.tif", "r.html", "ref.tif"]


def test_reference_on_a_finer_and_on_a_coarser_grid_is_realigned(tmp_path):
    rng = np.random.default_rng(1)
    pred = rng.integers(1, 4, (40, 60)).astype(np.uint8)  # 10 m
    truth = rng.integers(0, 4, (40, 60)).astype(np.uint8)  # labels on the 10 m grid
    pred_path = write(tmp_path / "pred.tif", pred, nodata=0)
    expected = E.evaluate_map(pred_path, write(tmp_path / "same.tif", truth))["matrix"]

    fine = np.repeat(np.repeat(truth, 2, axis=0), 2, axis=1)  # the same labels at 5 m
    got = E.evaluate_map(pred_path, write(tmp_path / "fine.tif", fine, res=5.0))
    assert got["matrix"] == expected
    assert any("resampled" in note for note in got["notes"])

    coarse = rng.integers(0, 4, (20, 30)).astype(np.uint8)  # 20 m, shifted by one 10 m pixel
    coarse_path = write(tmp_path / "coarse.tif", coarse, res=20.0, x0=X0 + 10, y0=Y0 - 10)
    on_grid = np.zeros((40, 60), np.uint8)  # outside the reference: unlabelled
    on_grid[1:, 1:] = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[:39, :59]
    want = E.evaluate_map(pred_path, write(tmp_path / "ongrid.tif", on_grid))["matrix"]
    assert E.evaluate_map(pred_path, coarse_path)["matrix"] == want


def test_class_names_from_model_metadata_tag_or_numbers(tmp_path, hand_built):
    pred, ref, ref_arr, pred_arr = hand_built
    model = tmp_path / "m.keras"
    with zipfile.ZipFile(model, "w") as archive:  # metadata is all evaluate reads
        archive.writestr(
            METADATA_ENTRY,
            json.dumps(
                {
                    "format": FORMAT_NAME,
                    "format_version": FORMAT_VERSION,
                    "class_names": ["open water", "marsh", "trees"],
                }
            ),
        )
    assert E.evaluate_map(pred, ref, model=str(model))["class_names"] == [
        "open water",
        "marsh",
        "trees",
    ]
    assert E.evaluate_map(pred, ref)["class_names"] == ["class 1", "class 2", "class 3"]
    tagged = write(
        tmp_path / "tagged.tif",
        pred_arr,
        nodata=0,
        tags={"class_names": json.dumps(["a", "b", "c"])},
    )
    assert E.evaluate_map(tagged, ref)["class_names"] == ["a", "b", "c"]


def test_errors(tmp_path, hand_built):
    pred, ref, ref_arr, _ = hand_built
    far = write(tmp_path / "far.tif", ref_arr, nodata=255, x0=X0 + 1e5)
    with pytest.raises(CoreError, match="do not overlap"):
        E.evaluate_map(pred, far)
    with pytest.raises(CoreError, match="class id 3 but only 2 class names"):
        E.evaluate_map(pred, ref, class_names="water,wetland")
    empty = write(tmp_path / "empty.tif", np.zeros_like(ref_arr), nodata=255)
    with pytest.raises(CoreError, match="share no labelled pixel"):
        E.evaluate_map(pred, empty)
    with pytest.raises(CoreError, match="also an input"):
        E.evaluate_map(pred, ref, output_table=ref)


def test_reference_classes_beyond_the_names_are_ignored_with_a_note(tmp_path, hand_built):
    pred, _, ref_arr, _ = hand_built
    extra = ref_arr.copy()
    extra[0, :2] = 4  # a class the prediction does not know
    result = E.evaluate_map(
        pred, write(tmp_path / "ref4.tif", extra, nodata=255), class_names="water,wetland,forest"
    )
    assert result["pixels"] == 119 - int(((ref_arr[0, :2] >= 1) & (ref_arr[0, :2] <= 3)).sum())
    assert any("above 3" in note for note in result["notes"])
