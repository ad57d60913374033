#!/usr/bin/env python3
"""Write the shipped graphical-modeler chains to resources/models/*.model3.

The chains are built with QGIS's modeler API (what the Model Designer saves),
so they stay valid for the QGIS that runs this script:

* map_new_scene: align (scene + label polygons) -> clean -> predict (styled);
* train_from_polygons: align -> clean -> train;
* map_and_polygons: predict (with probabilities and uncertainty) -> cleanmap (minimum
  mapping unit, polygons with mean probability and uncertainty); needs no labels;
* map_planet_scene: preparescene (usable-data mask, band names) -> predict -> cleanmap,
  for a Planet delivery.
* prepare_and_map: preparescene (UDM2 applied, bands named) -> predict (bands by name).

    QT_HASH_SEED=0 .venv/bin/python scripts/make_models.py

(a fixed hash seed keeps Qt's XML attributes in the committed order, so that a diff shows
only what changed).
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _child(model, alg_id, child_id, description, x, y):
    from qgis.core import QgsProcessingModelChildAlgorithm
    from qgis.PyQt.QtCore import QPointF

    child = QgsProcessingModelChildAlgorithm(alg_id)
    child.setChildId(child_id)
    child.setDescription(description)
    child.setPosition(QPointF(x, y))
    return child


def _param(model, definition, x, y):
    from qgis.core import QgsProcessingModelParameter
    from qgis.PyQt.QtCore import QPointF

    component = QgsProcessingModelParameter(definition.name())
    component.setPosition(QPointF(x, y))
    model.addModelParameter(definition, component)


def _output(child, name, description, x, y):
    from qgis.core import QgsProcessingModelOutput
    from qgis.PyQt.QtCore import QPointF

    output = QgsProcessingModelOutput(description, description)
    output.setChildOutputName(name)
    output.setChildId(child.childId())
    output.setPosition(QPointF(x, y))
    child.setModelOutputs({description: output})


def _common_inputs(model):
    """Scene/image, label polygons, their class field and class names."""
    from qgis.core import (
        QgsProcessing,
        QgsProcessingParameterFeatureSource,
        QgsProcessingParameterField,
        QgsProcessingParameterRasterLayer,
        QgsProcessingParameterString,
    )

    _param(model, QgsProcessingParameterRasterLayer("scene", "Scene (multiband image)"), 60, 60)
    _param(
        model,
        QgsProcessingParameterFeatureSource(
            "labels",
            "Label polygons (field survey or OpenStreetMap)",
            [QgsProcessing.TypeVectorPolygon],
        ),
        60,
        140,
    )
    _param(
        model,
        QgsProcessingParameterField(
            "class_field", "Class field of the polygons", parentLayerParameterName="labels"
        ),
        60,
        220,
    )
    _param(
        model,
        QgsProcessingParameterString(
            "class_names", "Class names in id order (for a text class field)", optional=True
        ),
        60,
        300,
    )


def _align_and_clean(model, keep_labels=False):
    from qgis.core import QgsProcessingModelChildParameterSource as Source

    align = _child(model, "wetlandunet:alignpair", "align", "Align scene and labels", 320, 100)
    align.addParameterSources("IMAGE", [Source.fromModelParameter("scene")])
    align.addParameterSources("MASK_VECTOR", [Source.fromModelParameter("labels")])
    align.addParameterSources("CLASS_FIELD", [Source.fromModelParameter("class_field")])
    align.addParameterSources("CLASS_NAMES", [Source.fromModelParameter("class_names")])
    align.addParameterSources("PIXEL_SIZE", [Source.fromStaticValue(0)])
    align.addParameterSources("RESAMPLING", [Source.fromStaticValue("bilinear")])
    if keep_labels:
        _output(align, "OUTPUT_MASK", "Aligned labels", 320, 200)
    model.addChildAlgorithm(align)
    clean = _child(model, "wetlandunet:cleaninvalid", "clean", "Clean invalid pixels", 560, 100)
    clean.addParameterSources("INPUT", [Source.fromChildOutput("align", "OUTPUT_IMAGE")])
    clean.addParameterSources("INVALID_VALUES", [Source.fromStaticValue("-1")])
    clean.addParameterSources("MODE", [Source.fromStaticValue("nodata")])
    clean.addParameterSources("FILL_VALUE", [Source.fromStaticValue(0)])
    model.addChildAlgorithm(clean)
    return align, clean


def map_new_scene():
    """align + clean + predict + load styled, for one new scene."""
    from qgis.core import QgsProcessingModelAlgorithm, QgsProcessingParameterFile
    from qgis.core import QgsProcessingModelChildParameterSource as Source

    model = QgsProcessingModelAlgorithm("map_new_scene", "Chains (modeler)", "chains")
    model.setHelpContent(
        {
            "ALG_DESC": (
                "Aligns a new scene with its label polygons, cleans invalid pixels and classifies "
                "the cleaned scene with a trained model; the class map loads styled. The aligned "
                "labels are kept for 'Evaluate class map'."
            )
        }
    )
    _common_inputs(model)
    _param(model, QgsProcessingParameterFile("model", "Model (.keras)", extension="keras"), 60, 380)
    _align_and_clean(model, keep_labels=True)
    predict = _child(model, "wetlandunet:predict", "predict", "Classify scene", 800, 100)
    predict.addParameterSources("MODEL", [Source.fromModelParameter("model")])
    predict.addParameterSources("INPUT", [Source.fromChildOutput("clean", "OUTPUT")])
    predict.addParameterSources("TTA", [Source.fromStaticValue("1")])
    _output(predict, "OUTPUT", "Land-cover map", 1000, 160)
    model.addChildAlgorithm(predict)
    return model


def train_from_polygons():
    """align + clean + train."""
    from qgis.core import QgsProcessingModelAlgorithm, QgsProcessingParameterNumber
    from qgis.core import QgsProcessingModelChildParameterSource as Source

    model = QgsProcessingModelAlgorithm("train_from_polygons", "Chains (modeler)", "chains")
    model.setHelpContent(
        {
            "ALG_DESC": (
                "Aligns a scene with label polygons, cleans invalid pixels and trains a U-Net on "
                "the pair; writes the model and its training report."
            )
        }
    )
    _common_inputs(model)
    _param(
        model,
        QgsProcessingParameterNumber(
            "epochs",
            "Epochs (empty = from the model size: 30 small, 20 large)",
            QgsProcessingParameterNumber.Integer,
            None,
            True,
            1,
        ),
        60,
        380,
    )
    _align_and_clean(model)
    train = _child(model, "wetlandunet:train", "train", "Train U-Net", 800, 100)
    train.addParameterSources("IMAGES", [Source.fromChildOutput("clean", "OUTPUT")])
    train.addParameterSources("MASKS", [Source.fromChildOutput("align", "OUTPUT_MASK")])
    train.addParameterSources("CLASS_NAMES", [Source.fromModelParameter("class_names")])
    train.addParameterSources("EPOCHS", [Source.fromModelParameter("epochs")])
    _output(train, "OUTPUT_MODEL", "Model", 1000, 160)
    model.addChildAlgorithm(train)
    return model


def map_and_polygons():
    """predict -> cleanmap with polygons: a new scene to a cleaned map and its polygons."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingParameterRasterLayer,
    )
    from qgis.core import QgsProcessingModelChildParameterSource as Source

    model = QgsProcessingModelAlgorithm("map_and_polygons", "Chains (modeler)", "chains")
    model.setHelpContent(
        {
            "ALG_DESC": (
                "Classifies a scene with a trained model, removes patches smaller than the "
                "minimum mapping unit (hectares) and writes the cleaned map and its polygons "
                "(class, area in hectares, mean probability and mean uncertainty), both styled. "
                "Needs no labels. For a Planet delivery, run 'preparescene' first (or add it "
                "in front of 'Classify scene' in the Model Designer)."
            )
        }
    )
    _param(model, QgsProcessingParameterRasterLayer("scene", "Scene (multiband image)"), 60, 60)
    _model_and_mmu_params(model)
    _predict_and_clean(model, Source.fromModelParameter("scene"), 320)
    return model


def _model_and_mmu_params(model):
    """The inputs the mapping chains share: the trained model and the minimum mapping unit."""
    from qgis.core import QgsProcessingParameterFile, QgsProcessingParameterNumber

    _param(model, QgsProcessingParameterFile("model", "Model (.keras)", extension="keras"), 60, 140)
    _param(
        model,
        QgsProcessingParameterNumber(
            "mmu_ha",
            "Minimum mapping unit (hectares)",
            QgsProcessingParameterNumber.Double,
            0.1,
            minValue=0.0,
        ),
        60,
        220,
    )


def _predict_and_clean(model, scene_source, x):
    """predict (probabilities, uncertainty) -> cleanmap (polygons) from ``scene_source``."""
    from qgis.core import QgsProcessingModelChildParameterSource as Source

    predict = _child(model, "wetlandunet:predict", "predict", "Classify scene", x, 100)
    predict.addParameterSources("MODEL", [Source.fromModelParameter("model")])
    predict.addParameterSources("INPUT", [scene_source])
    predict.addParameterSources("TTA", [Source.fromStaticValue("1")])
    _output(predict, "OUTPUT", "Land-cover map", x + 200, 40)
    model.addChildAlgorithm(predict)
    clean = _child(
        model, "wetlandunet:cleanmap", "clean", "Minimum mapping unit and polygons", x + 240, 160
    )
    clean.addParameterSources("INPUT", [Source.fromChildOutput("predict", "OUTPUT")])
    clean.addParameterSources("MODEL", [Source.fromModelParameter("model")])
    clean.addParameterSources("MMU_HA", [Source.fromModelParameter("mmu_ha")])
    clean.addParameterSources("CONNECTIVITY", [Source.fromStaticValue("8")])
    clean.addParameterSources(
        "PROBABILITIES", [Source.fromChildOutput("predict", "OUTPUT_PROBABILITIES")]
    )
    clean.addParameterSources(
        "UNCERTAINTY", [Source.fromChildOutput("predict", "OUTPUT_UNCERTAINTY")]
    )
    _outputs(
        clean,
        [("OUTPUT", "Cleaned land-cover map"), ("OUTPUT_POLYGONS", "Land-cover polygons")],
        x + 480,
        160,
    )
    model.addChildAlgorithm(clean)


def map_planet_scene():
    """preparescene -> predict -> cleanmap with polygons, for a Planet delivery."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingParameterRasterLayer,
    )
    from qgis.core import QgsProcessingModelChildParameterSource as Source

    model = QgsProcessingModelAlgorithm("map_planet_scene", "Chains (modeler)", "chains")
    model.setHelpContent(
        {
            "ALG_DESC": (
                "For a PlanetScope delivery: applies the scene's usable-data mask (UDM2 "
                "found beside it; cloud, shadow, heavy haze and blackfill become nodata) and "
                "names its bands (preparescene), classifies it with a trained model, removes "
                "patches smaller than the minimum mapping unit and writes the cleaned map and "
                "its polygons (class, hectares, mean probability and uncertainty). Needs no "
                "labels."
            )
        }
    )
    _param(
        model, QgsProcessingParameterRasterLayer("scene", "Planet scene (analytic asset)"), 60, 60
    )
    _model_and_mmu_params(model)
    prepare = _child(model, "wetlandunet:preparescene", "prepare", "Prepare Planet scene", 300, 60)
    prepare.addParameterSources("INPUT", [Source.fromModelParameter("scene")])
    model.addChildAlgorithm(prepare)
    _predict_and_clean(model, Source.fromChildOutput("prepare", "OUTPUT"), 520)
    return model


def prepare_and_map():
    """preparescene -> predict: a Planet delivery to a land-cover map, clouds left out."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingParameterFile,
        QgsProcessingParameterRasterLayer,
    )
    from qgis.core import QgsProcessingModelChildParameterSource as Source

    model = QgsProcessingModelAlgorithm("prepare_and_map", "Chains (modeler)", "chains")
    model.setHelpContent(
        {
            "ALG_DESC": (
                "Prepares a Planet scene as delivered (its UDM2, found beside it when left "
                "empty: clouds, shadows, heavy haze, blackfill and unusable data become "
                "nodata; bands get their names) and classifies it with a trained model, which "
                "picks its bands by name: a model trained on prepared 4-band scenes maps "
                "prepared 8-band scenes too. Masked pixels are nodata in the map."
            )
        }
    )
    _param(
        model,
        QgsProcessingParameterRasterLayer("scene", "Planet scene (..._AnalyticMS_SR_....tif)"),
        60,
        60,
    )
    _param(
        model,
        QgsProcessingParameterRasterLayer(
            "udm", "Usable-data mask (UDM2; empty = found beside the scene)", optional=True
        ),
        60,
        140,
    )
    _param(model, QgsProcessingParameterFile("model", "Model (.keras)", extension="keras"), 60, 220)
    prepare = _child(model, "wetlandunet:preparescene", "prepare", "Prepare scene", 320, 100)
    prepare.addParameterSources("INPUT", [Source.fromModelParameter("scene")])
    prepare.addParameterSources("UDM", [Source.fromModelParameter("udm")])
    prepare.addParameterSources(
        "MASK_CLASSES", [Source.fromStaticValue(["cloud", "shadow", "heavy_haze"])]
    )
    prepare.addParameterSources("MASK_BUFFER", [Source.fromStaticValue(0)])
    prepare.addParameterSources("RADIOMETRY", [Source.fromStaticValue("as_is")])
    model.addChildAlgorithm(prepare)
    predict = _child(model, "wetlandunet:predict", "predict", "Classify scene", 560, 100)
    predict.addParameterSources("MODEL", [Source.fromModelParameter("model")])
    predict.addParameterSources("INPUT", [Source.fromChildOutput("prepare", "OUTPUT")])
    predict.addParameterSources("TTA", [Source.fromStaticValue("1")])
    _output(predict, "OUTPUT", "Land-cover map", 760, 160)
    model.addChildAlgorithm(predict)
    return model


def _outputs(child, names, x, y):
    """Several model outputs of one child: [(child output name, description), ...]."""
    from qgis.core import QgsProcessingModelOutput
    from qgis.PyQt.QtCore import QPointF

    outputs = {}
    for k, (name, description) in enumerate(names):
        output = QgsProcessingModelOutput(description, description)
        output.setChildOutputName(name)
        output.setChildId(child.childId())
        output.setPosition(QPointF(x, y + 80 * k))
        outputs[description] = output
    child.setModelOutputs(outputs)


def main():
    from wetland_unet_plugin.processing.headless import start_qgis, stop_qgis

    app, plugin = start_qgis()
    folder = os.path.join(ROOT, "resources", "models")
    os.makedirs(folder, exist_ok=True)
    for name, build in (
        ("map_new_scene", map_new_scene),
        ("train_from_polygons", train_from_polygons),
        ("map_and_polygons", map_and_polygons),
        ("prepare_and_map", prepare_and_map),
        ("map_planet_scene", map_planet_scene),
    ):
        model = build()
        model.updateDestinationParameters()
        path = os.path.join(folder, name + ".model3")
        if not model.toFile(path):
            raise SystemExit(f"could not write {path}")
        print(path)
    stop_qgis(app, plugin)


if __name__ == "__main__":
    main()
    os._exit(0)
