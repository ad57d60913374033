#!/usr/bin/env python3
"""How far do per-pixel and neighbourhood-mean features get on the quality split?

    python benchmarks/quality_ceiling.py [WORK]     # after make bench-quality (~4 min)

Reads the aligned tiles that ``bench_quality.py`` wrote (WORK, default
bench_output/quality/work) and fits, on the same 60,000 sampled training pixels
and the same held-out tiles 4, 6, 9 and 15, a random forest (200 trees) and a
multilayer perceptron (scikit-learn, two hidden layers of 64) on the 4 bands
alone and with their k x k means for several k. It bounds what context in the
form of local means can add with bands 1,2,3,7, beside the U-Net's figure in
quality.json. Writes WORK/../ceiling.json and prints a table.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_quality as bq  # noqa: E402  (the benchmark's constants and helpers)

WINDOW_SETS = ((), (7,), (3, 7), (3, 7, 15))


def main(argv=None) -> int:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neural_network import MLPClassifier

    args = sys.argv[1:] if argv is None else argv
    work = os.path.abspath(args[0] if args else os.path.join(bq.OUT, "work"))
    if not os.path.exists(os.path.join(work, "tile0_image.tif")):
        print(f"quality_ceiling: no aligned tiles in {work}; run make bench-quality first.")
        return 0
    images = {i: bq.read_bands(os.path.join(work, f"tile{i}_image.tif")) for i in range(bq.TILES)}
    labels = {
        i: bq.read_band(os.path.join(work, f"tile{i}_labels.tif")).ravel() for i in range(bq.TILES)
    }
    train = [i for i in range(bq.TILES) if i not in bq.HELD_OUT]
    rows = []
    for windows in WINDOW_SETS:

        def xy(tiles, windows=windows):
            x = np.concatenate([bq.features(images[i], windows) for i in tiles])
            y = np.concatenate([labels[i] for i in tiles])
            return x[y > 0], y[y > 0]

        x, y = xy(train)
        xt, yt = xy(bq.HELD_OUT)
        pick = np.random.default_rng(bq.SEED).choice(
            len(y), min(bq.RF_SAMPLE, len(y)), replace=False
        )
        low, high = np.percentile(x, 2, axis=0), np.percentile(x, 98, axis=0)
        scale = np.maximum(high - low, 1e-6)
        forest = RandomForestClassifier(bq.RF_TREES, n_jobs=2, random_state=bq.SEED)
        forest.fit(x[pick], y[pick])
        mlp = MLPClassifier((64, 64), max_iter=200, random_state=bq.SEED)
        mlp.fit((x[pick] - low) / scale, y[pick])
        row = {
            "means": list(windows),
            "rf_oa": float(np.mean(forest.predict(xt) == yt)),
            "mlp_oa": float(np.mean(mlp.predict((xt - low) / scale) == yt)),
        }
        rows.append(row)
        name = "bands only" if not windows else "bands + " + ", ".join(f"{k}x{k}" for k in windows)
        print(f"{name:28s} RF OA {row['rf_oa']:.4f}   MLP OA {row['mlp_oa']:.4f}", flush=True)
    path = os.path.join(os.path.dirname(work), "ceiling.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(
            {
                "held_out_tiles": list(bq.HELD_OUT),
                "bands": list(bq.BANDS),
                "training_pixels": int(min(bq.RF_SAMPLE, len(y))),
                "rows": rows,
            },
            handle,
            indent=1,
        )
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
