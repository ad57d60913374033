"""Seams with a trained model: tiled prediction against the whole scene in one tile.

    make demo                                  # trains demo_output/model.keras
    .venv/bin/python benchmarks/bench_seams.py # that model on demo_output/s2_stack.tif
    .venv/bin/python benchmarks/bench_seams.py --model M.keras --scene S.tif --tiles 512

The scene is predicted once as a single tile (OVERLAP 0, every pixel with all the
scene as context) and then with each TILE_SIZE and OVERLAP asked. Compared over the
valid pixels at least the model's receptive margin away from the scene's edge (the
single tile sees zero padding there, the tiled runs mirror padding): the largest,
99.9th percentile and mean difference of the class probabilities (largest over the
classes), and the share of pixels given the same class. A figure shows where the
differences are (``--figure``).

The benchmark's other models have random weights; their probabilities hardly depend
on context, so they understate seams (bench_limit's seam check: 0.012 largest
difference at overlap 32, against 0.20 for the demo's trained model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

#: The whole scene must fit one tile: activations grow with its area.
MAX_SIDE = 4096


def predict(loaded, scene: str, work: str, tile: int, overlap: int) -> tuple:
    """Probabilities (C, rows, cols) float32 and classes (rows, cols) of one tiled run."""
    import rasterio

    from wetland_unet_plugin.core.inference import predict_scene

    probs, classes = os.path.join(work, "p.tif"), os.path.join(work, "c.tif")
    predict_scene(
        loaded, scene, classes, output_probabilities=probs, tile_size=tile, overlap=overlap,
        probability_dtype="float32",
    )  # fmt: skip
    with rasterio.open(probs) as src:
        p = src.read()
    with rasterio.open(classes) as src:
        c = src.read(1)
    return p, c


def compare(diff, c, ref_classes, inner) -> dict:
    """Differences of one run from the single-tile reference over the ``inner`` pixels.

    Args:
        diff: (rows, cols) largest absolute probability difference over the classes.
        c, ref_classes: (rows, cols) classes of the run and of the reference.
        inner: (rows, cols) bool, the pixels compared.
    """
    diff = diff[inner]
    return {
        "max_probability_difference": round(float(diff.max()), 4),
        "p999_probability_difference": round(float(np.quantile(diff, 0.999)), 4),
        "mean_probability_difference": round(float(diff.mean()), 6),
        "class_agreement_percent": round(100.0 * float((c[inner] == ref_classes[inner]).mean()), 3),
    }


def main(argv=None) -> int:
    """Run the comparison and print a table; write JSON and the figure."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "demo_output", "model.keras"))
    ap.add_argument("--scene", default=os.path.join(ROOT, "demo_output", "s2_stack.tif"))
    ap.add_argument("--tiles", default="256,512", help="TILE_SIZEs, comma separated")
    ap.add_argument("--overlaps", default="16,32,48,64", help="OVERLAPs, comma separated")
    ap.add_argument("--output", default=os.path.join(ROOT, "bench_output", "bench_seams.json"))
    ap.add_argument("--figure", default=os.path.join(ROOT, "bench_output", "bench_seams.png"))
    args = ap.parse_args(argv)
    for path in (args.model, args.scene):
        if not os.path.exists(path):
            print(f"{path} does not exist: run `make demo` first, or give --model and --scene.")
            return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import rasterio

    from wetland_unet_plugin.core.inference import get_cached_model
    from wetland_unet_plugin.core.inference.spec import model_spec
    from wetland_unet_plugin.core.unet import receptive_margin, tile_multiple

    loaded = get_cached_model(args.model)
    spec = model_spec(loaded)
    with rasterio.open(args.scene) as src:
        rows, cols = src.height, src.width
    if max(rows, cols) > MAX_SIDE:
        print(f"The scene is {cols} x {rows}: at most {MAX_SIDE} pixels a side fit one tile.")
        return 2
    mult = tile_multiple(spec.depth)
    whole = -(-max(rows, cols) // mult) * mult
    edge = receptive_margin(spec.depth)
    tiles = [int(t) for t in args.tiles.split(",")]
    overlaps = [int(o) for o in args.overlaps.split(",")]
    report = {
        "model": os.path.relpath(args.model, ROOT),
        "scene": os.path.relpath(args.scene, ROOT),
        "scene_size": [cols, rows],
        "depth": spec.depth,
        "edge_excluded_px": edge,
        "runs": [],
    }
    maps = {}
    with tempfile.TemporaryDirectory() as work:
        ref, ref_classes = predict(loaded, args.scene, work, whole, 0)
        inner = np.zeros(ref_classes.shape, bool)
        inner[edge:-edge, edge:-edge] = True
        inner &= ref_classes > 0
        for tile in tiles:
            for overlap in overlaps:
                if overlap > tile // 2:
                    continue
                p, c = predict(loaded, args.scene, work, tile, overlap)
                diff = np.abs(p - ref).max(axis=0)
                run = {"tile_size": tile, "overlap": overlap}
                run.update(compare(diff, c, ref_classes, inner))
                report["runs"].append(run)
                if tile == tiles[0]:
                    maps[overlap] = (np.where(inner, diff, np.nan), (c != ref_classes) & inner)
                print(
                    f"tile {tile:4d} overlap {overlap:3d}:"
                    f"  largest {run['max_probability_difference']:.4f}"
                    f"  99.9 % {run['p999_probability_difference']:.4f}"
                    f"  mean {run['mean_probability_difference']:.6f}"
                    f"  same class {run['class_agreement_percent']:.3f} %",
                    flush=True,
                )
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=1)
    if args.figure and maps:
        plot(maps, tiles[0], edge, args.figure)
    print(f"written {args.output}" + (f" and {args.figure}" if args.figure and maps else ""))
    return 0


def plot(maps: dict, tile: int, edge: int, path: str) -> None:
    """One panel per overlap: the probability difference, class changes in cyan."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = next(iter(maps.values()))[0].shape
    fig, axes = plt.subplots(len(maps), 1, figsize=(8, 8 * rows / cols * len(maps) + 0.8))
    for ax, (overlap, (diff, changed)) in zip(np.atleast_1d(axes), sorted(maps.items())):
        cmap = plt.get_cmap("magma").copy()
        cmap.set_bad("0.7")
        image = ax.imshow(diff, vmin=0, vmax=0.1, cmap=cmap, interpolation="nearest")
        ys, xs = np.nonzero(changed)
        ax.plot(xs, ys, ",", color="cyan")
        ax.set_title(
            f"tile {tile}, overlap {overlap}: |tiled - one tile|, largest over the classes\n"
            f"class changed: cyan; grey: the {edge} px edge, not compared",
            fontsize=9,
        )
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.02)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
