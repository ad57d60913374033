"""Same seed, same model, same map: a before/after check for refactors.

Trains a tiny seeded model on a synthetic scene through the core jobs, predicts
the scene with TTA 8, and prints (or compares) SHA-256 hashes of the weights,
the class map and the probabilities. Run it before a change with --save and
after it with --compare; on one machine the hashes must be identical.

    .venv/bin/python benchmarks/same_seed_check.py --save /tmp/before.json
    .venv/bin/python benchmarks/same_seed_check.py --compare /tmp/before.json
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests", "core")]

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from synthetic import make_scene, write_mask  # noqa: E402

from wetland_unet_plugin.core import load_model  # noqa: E402
from wetland_unet_plugin.core.feedback import Feedback  # noqa: E402
from wetland_unet_plugin.core.jobs import run_job  # noqa: E402


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hashes(folder: str) -> dict:
    """Train, predict and hash (weights, class map, probabilities)."""
    image, mask = os.path.join(folder, "img.tif"), os.path.join(folder, "mask.tif")
    write_mask(mask, make_scene(image, 96, 96, n_bands=4, seed=3), image)
    model = os.path.join(folder, "m.keras")
    train = dict(
        images=[image],
        masks=[mask],
        class_names="water,wetland,forest",
        output_model=model,
        patch_size=32,
        filters=4,
        depth=2,
        epochs=2,
        train_size=32,
        val_size=16,
        batch_size=8,
        seed=7,
        jitter=0.1,
    )
    run_job("train", train, Feedback())
    weights = load_model(model).keras_model.get_weights()
    out = {"weights": sha(b"".join(np.ascontiguousarray(w).tobytes() for w in weights))}
    run_job(
        "predict",
        dict(
            model=model,
            input=image,
            output=os.path.join(folder, "map.tif"),
            output_probabilities=os.path.join(folder, "prob.tif"),
            tta=8,
        ),
        Feedback(),
    )
    for key, name in (("map", "map.tif"), ("prob", "prob.tif")):
        with rasterio.open(os.path.join(folder, name)) as src:
            out[key] = sha(src.read().tobytes())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--save", help="write the hashes to this JSON file")
    group.add_argument("--compare", help="compare with hashes saved earlier")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        found = hashes(folder)
    print(json.dumps(found, indent=1))
    if args.save:
        with open(args.save, "w") as handle:
            json.dump(found, handle, indent=1)
    if args.compare:
        with open(args.compare) as handle:
            saved = json.load(handle)
        differ = [k for k in found if found[k] != saved.get(k)]
        print("identical" if not differ else f"DIFFERENT: {', '.join(differ)}")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
