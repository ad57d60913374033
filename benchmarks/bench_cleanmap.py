"""cleanmap benchmark: time and peak memory against map size.

    python benchmarks/bench_cleanmap.py              # 2000 x 2000, 8000 x 4000, 16000 x 8000
    python benchmarks/bench_cleanmap.py --sizes 2000x2000

Each map is a speckled class map like a U-Net's raw output: smooth regions of 4
classes (a blurred random field cut at its quartiles) with 3 % single-pixel
noise and 30 % nodata (a rotated footprint's corners), 3 m pixels. ``clean_map``
runs with MMU_HA 0.05 (56 pixels) and polygons, each map in a fresh process
(the map is written before it starts); peak memory is that process's VmHWM,
with GDAL's block cache set to 64 MB (``--gdal-cache``) so that the figure is
the cleaning's own memory. The merge works in strips of ``mmu.STRIP_PIXELS``
pixels on raw scratch files, so the peak should stay nearly flat while the map
grows; what grows is a few numbers per patch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def write_map(path: str, rows: int, cols: int, seed: int = 0) -> None:
    """Write the speckled class map, block by block (the writer needs no full-size array)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    coarse = rng.random((rows // 50 + 2, cols // 50 + 2))  # one value per 50 pixels
    edges = np.quantile(coarse, [0.25, 0.5, 0.75])
    profile = dict(
        driver="GTiff", width=cols, height=rows, count=1, dtype="uint8", nodata=0,
        crs="EPSG:32618", transform=from_origin(600000, 500000, 3.0, 3.0),
        tiled=True, compress="deflate",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, rows, 1000):
            h = min(1000, rows - r0)
            y, x = np.mgrid[r0 : r0 + h, 0:cols]
            field = ndimage.map_coordinates(coarse, [y / 50.0, x / 50.0], order=1)
            block = np.digitize(field, edges).astype(np.uint8) + 1
            noise = rng.random(block.shape) < 0.03
            block[noise] = rng.integers(1, 5, int(noise.sum()))
            u, v = x / cols - 0.5, y / rows - 0.5  # corners outside a rotated rectangle
            ok = (np.abs(0.9 * u + 0.4 * v) < 0.42) & (np.abs(-0.4 * u + 0.9 * v) < 0.42)
            block[~ok] = 0
            dst.write(block, 1, window=Window(0, r0, cols, h))


def one(src: str) -> dict:
    """Run clean_map on one map in this process; return its figures."""
    import rasterio

    from wetland_unet_plugin.core.cleanmap import clean_map

    with rasterio.open(src) as ds:
        rows, cols = ds.height, ds.width
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        result = clean_map(
            src,
            os.path.join(folder, "clean.tif"),
            class_names="water,wetland,forest,crops",
            mmu_ha=0.05,
            output_polygons=os.path.join(folder, "poly.gpkg"),
        )
        seconds = time.perf_counter() - start
    with open("/proc/self/status", encoding="ascii") as status:
        hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return {
        "size": f"{cols} x {rows}",
        "megapixels": rows * cols / 1e6,
        "seconds": round(seconds, 1),
        "peak_mb": round(hwm / 1024, 0),
        "merges": result["patches_merged"],
        "polygons": result["polygons"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000x2000,8000x4000,16000x8000")
    parser.add_argument(
        "--gdal-cache",
        default="64",
        help="GDAL_CACHEMAX of the cleaning process in MB (GDAL's default is 5%% of RAM, "
        "and its block cache then holds written blocks up to that size)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    results = []
    print(f"GDAL_CACHEMAX {args.gdal_cache} MB")
    print(f"{'map':>14} {'Mpx':>6} {'seconds':>8} {'peak MB':>8} {'merges':>8} {'polygons':>9}")
    for size in args.sizes.split(","):
        cols, rows = (int(v) for v in size.split("x"))
        with tempfile.TemporaryDirectory() as folder:
            src = os.path.join(folder, "map.tif")
            write_map(src, rows, cols)
            out = subprocess.run(
                [sys.executable, __file__, "--one", src],
                capture_output=True,
                text=True,
                check=True,
                env=dict(os.environ, GDAL_CACHEMAX=args.gdal_cache),
            )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"{r['size']:>14} {r['megapixels']:>6.0f} {r['seconds']:>8} {r['peak_mb']:>8.0f} "
            f"{r['merges']:>8} {r['polygons']:>9}"
        )
    os.makedirs(os.path.join(ROOT, "bench_output"), exist_ok=True)
    with open(os.path.join(ROOT, "bench_output", "bench_cleanmap.json"), "w") as f:
        json.dump(
            {"load": os.getloadavg(), "gdal_cache_mb": args.gdal_cache, "results": results},
            f,
            indent=1,
        )


if __name__ == "__main__":
    main()
