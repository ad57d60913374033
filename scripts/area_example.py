#!/usr/bin/env python3
"""Worked example: hectares with 95 % confidence intervals for the demo's map.

Runs the README's chain on the output of ``scripts/demo.py`` through the plugin's
Processing algorithms:

  wetlandunet:samplepoints on landcover_east.tif (stratified by mapped class)
  -> label the points (here from the demo's OpenStreetMap label raster, standing in
     for an analyst who labels them in QGIS from better data)
  -> wetlandunet:evaluate with the labelled points (OUTPUT_AREAS, OUTPUT_HTML).

    python scripts/demo.py --output demo_output
    python scripts/area_example.py --demo demo_output

Points where OpenStreetMap has no label stay empty, as an analyst's unsure points
would, and evaluate skips and counts them.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def label_from_raster(points_path: str, raster_path: str) -> int:
    """Fill the points' ``reference`` field from a class raster (0/nodata: left empty).

    Returns:
        The number of points labelled.
    """
    import rasterio
    from osgeo import ogr

    ds = ogr.Open(points_path, 1)
    layer = ds.GetLayer(0)
    labelled = 0
    ds.StartTransaction()
    with rasterio.open(raster_path) as labels:
        for feature in layer:
            geom = feature.GetGeometryRef()
            value = int(next(labels.sample([(geom.GetX(), geom.GetY())], indexes=1))[0])
            if value > 0 and value != labels.nodata:
                feature.SetField("reference", value)
                labelled += 1
            else:
                feature.SetFieldNull("reference")
            layer.SetFeature(feature)
    ds.CommitTransaction()
    ds = None
    return labelled


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default=os.path.join(ROOT, "demo_output"))
    parser.add_argument("--sample-size", type=int, default=600)
    parser.add_argument("--min-per-class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args(argv)
    demo = os.path.abspath(args.demo)

    from wetland_unet_plugin.processing.headless import start_qgis, stop_qgis

    app, plugin = start_qgis()
    import processing

    points = os.path.join(demo, "sample_points.gpkg")
    for stale in (points,):
        if os.path.exists(stale):
            os.remove(stale)
    sampled = processing.run(
        "wetlandunet:samplepoints",
        {
            "INPUT": os.path.join(demo, "landcover_east.tif"),
            "MODEL": os.path.join(demo, "model.keras"),
            "SAMPLE_SIZE": args.sample_size,
            "MIN_PER_CLASS": args.min_per_class,
            "ALLOCATION": "minimum_then_proportional",
            "SEED": args.seed,
            "OUTPUT": points,
            "OUTPUT_TABLE": os.path.join(demo, "sample_allocation.csv"),
        },
    )
    labelled = label_from_raster(points, os.path.join(demo, "labels_east.tif"))
    print(f"{int(sampled['POINTS'])} points drawn, {labelled} labelled from OpenStreetMap")
    result = processing.run(
        "wetlandunet:evaluate",
        {
            "PREDICTION": os.path.join(demo, "landcover_east.tif"),
            "REFERENCE": points,
            "MODEL": os.path.join(demo, "model.keras"),
            "OUTPUT_AREAS": os.path.join(demo, "area_estimates.csv"),
            "OUTPUT_HTML": os.path.join(demo, "area_estimates.html"),
            "OUTPUT_TABLE": os.path.join(demo, "area_error_matrix.csv"),
        },
    )
    print(f"overall accuracy {result['OVERALL_ACCURACY']:.3f}")
    with open(os.path.join(demo, "area_estimates.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    def pm(row, key, digits):
        if not row[key]:
            return "-"
        ci = row[key + "_ci95"]
        return f"{float(row[key]):,.{digits}f}" + (f" ± {float(ci):,.{digits}f}" if ci else "")

    print("| class | mapped ha | estimated ha (95 % CI) | user's accuracy | producer's accuracy |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['class_name']} | {float(row['mapped_ha']):,.1f} | "
            f"{pm(row, 'estimated_ha', 1)} | {pm(row, 'users_accuracy', 2)} | "
            f"{pm(row, 'producers_accuracy', 2)} |"
        )
    stop_qgis(app, plugin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
