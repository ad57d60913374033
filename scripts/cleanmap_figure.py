#!/usr/bin/env python3
"""Render the README's picture of cleanmap: a speckled class map, the map after a
minimum mapping unit, and its polygons (docs/images/cleanmap_example.png).

    .venv/bin/python scripts/cleanmap_figure.py

The map is synthetic (smooth regions of three classes with 4 % salt-and-pepper
noise, 10 m pixels, 160 x 120 px); cleanmap runs with MMU_HA 0.1 (10 pixels),
water 0.03 (3 pixels), 8-connectivity.
"""

import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

NAMES = ["water", "wetland", "forest"]
COLORS = ["#1f78b4", "#33a5a0", "#1b7837"]


def speckled_map(rows=120, cols=160, seed=4):
    """Smooth regions of classes 1..3 with 4 % of pixels set to a random class."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random((rows, cols)), 6)
    classes = np.digitize(field, np.quantile(field, [0.3, 0.65])).astype(np.uint8) + 1
    noise = rng.random((rows, cols)) < 0.04
    classes[noise] = rng.integers(1, 4, noise.sum())
    return classes


def main(out=os.path.join(ROOT, "docs", "images", "cleanmap_example.png")):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch, PathPatch
    from matplotlib.path import Path
    from osgeo import ogr
    from rasterio.transform import from_origin

    from wetland_unet_plugin.core.cleanmap import clean_map

    classes = speckled_map()
    rows, cols = classes.shape
    with tempfile.TemporaryDirectory() as folder:
        src = os.path.join(folder, "map.tif")
        with rasterio.open(
            src,
            "w",
            driver="GTiff",
            width=cols,
            height=rows,
            count=1,
            dtype="uint8",
            crs="EPSG:32633",
            nodata=0,
            transform=from_origin(0, rows * 10, 10, 10),
        ) as dst:
            dst.write(classes, 1)
        result = clean_map(
            src,
            os.path.join(folder, "clean.tif"),
            class_names=",".join(NAMES),
            class_colors=",".join(COLORS),
            mmu_ha=0.1,
            mmu_per_class="water=0.03",
            connectivity=8,
            output_polygons=os.path.join(folder, "polygons.gpkg"),
        )
        with rasterio.open(result["output"]) as ds:
            cleaned = ds.read(1)
        source = ogr.Open(result["output_polygons"])
        polygons = []  # (class id, [exterior, holes...])
        for feature in source.GetLayer(0):
            geometry = feature.GetGeometryRef()
            rings = [
                np.asarray(geometry.GetGeometryRef(i).GetPoints())[:, :2]
                for i in range(geometry.GetGeometryCount())
            ]
            polygons.append((feature.GetField("class_id"), rings))
        source = None
    cmap = ListedColormap(COLORS)
    extent = (0, cols * 10, 0, rows * 10)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    for ax, data, title in (
        (axes[0], classes, "class map (speckled)"),
        (axes[1], cleaned, f"cleaned: {result['patches_merged']} patch merges"),
    ):
        ax.imshow(data, cmap=cmap, vmin=1, vmax=3, extent=extent, interpolation="nearest")
        ax.set_title(title, fontsize=10)
    axes[2].set_facecolor("white")
    for k, rings in polygons:
        # one path per polygon: its holes are cut out, not painted over
        vertices = np.concatenate(rings)
        codes = np.concatenate(
            [[Path.MOVETO] + [Path.LINETO] * (len(r) - 2) + [Path.CLOSEPOLY] for r in rings]
        )
        patch = PathPatch(Path(vertices, codes), facecolor=COLORS[k - 1], edgecolor="black")
        patch.set_linewidth(0.6)
        axes[2].add_patch(patch)
    axes[2].set_xlim(extent[0], extent[1])
    axes[2].set_ylim(extent[2], extent[3])
    axes[2].set_aspect("equal")
    axes[2].set_title(f"polygons: {result['polygons']} (GeoPackage)", fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(
        handles=[Patch(color=c, label=n) for n, c in zip(NAMES, COLORS)],
        loc="lower center",
        ncol=3,
        bbox_to_anchor=(0.5, -0.08),
        frameon=False,
    )
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(out, result["patches_merged"], result["polygons"], result["class_hectares"])


if __name__ == "__main__":
    main()
