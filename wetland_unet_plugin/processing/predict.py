"""wetlandunet:predict - tiled prediction of a scene into a styled class map (in the worker)."""

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from .base import WetlandAlgorithm, raster_source
from .feedback import run_in_worker
from .model_info import model_metadata, names_and_colors
from .styling import ClassStylePostProcessor, write_qml
from .tensorflow_check import worker_ready

TTA_CHOICES = [1, 2, 4, 8]
PRECISIONS = ["float32", "mixed_bfloat16", "mixed_float16"]
PROBABILITY_TYPES = ["uint8", "float32"]


class PredictAlgorithm(WetlandAlgorithm):
    """Classify a scene with a trained model, tile by tile, and load the map styled."""

    MODEL = "MODEL"
    INPUT = "INPUT"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    TTA = "TTA"
    BATCH_SIZE = "BATCH_SIZE"
    PRECISION = "PRECISION"
    PROBABILITY_TYPE = "PROBABILITY_TYPE"
    OUTPUT = "OUTPUT"
    OUTPUT_PROBABILITIES = "OUTPUT_PROBABILITIES"
    OUTPUT_MAP = "OUTPUT_MAP"
    OUTPUT_STYLE = "OUTPUT_STYLE"
    VALID_PIXELS = "VALID_PIXELS"

    ALG_ID = "predict"
    DISPLAY_NAME = "Classify scene (predict)"
    GROUP_ID = "deeplearning"
    GROUP = "Deep learning"
    HELP = (
        "Classifies a scene with a model from 'Train U-Net'. The scene is read in windows and "
        "predicted in overlapping tiles that are blended without seams; the model's band "
        "choice and normalisation are applied; pixels that are invalid in the input (NaN, "
        "nodata) are nodata in every output, and tiles without valid pixels are skipped.\n\n"
        "OUTPUT: class ids 1..N (uint8, 0 = nodata), loaded styled with the model's class "
        "names and colours (a .qml is written beside it). OUTPUT_PROBABILITIES: one band per "
        "class. OUTPUT_MAP: an RGBA picture in the class colours. TTA averages 1, 2, 4 or 8 "
        "flipped/rotated predictions. TensorFlow runs in the worker process; it keeps the "
        "model loaded, so batches of scenes do not reload it.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(self.MODEL, "Model (.keras)",
                                                     extension="keras"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Scene"))
        self.addParameter(QgsProcessingParameterEnum(
            self.TTA, "Test-time augmentation (transforms averaged)",
            [str(t) for t in TTA_CHOICES], defaultValue=0))
        self.add_advanced(QgsProcessingParameterNumber(
            self.TILE_SIZE, "Tile size (0 = automatic; multiple of 2^depth)",
            QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0))
        self.add_advanced(QgsProcessingParameterNumber(
            self.OVERLAP, "Tile overlap in pixels (-1 = automatic)",
            QgsProcessingParameterNumber.Integer, defaultValue=-1, minValue=-1))
        self.add_advanced(QgsProcessingParameterNumber(
            self.BATCH_SIZE, "Tiles per batch", QgsProcessingParameterNumber.Integer,
            defaultValue=4, minValue=1))
        self.add_advanced(QgsProcessingParameterEnum(
            self.PRECISION, "Arithmetic precision", PRECISIONS, defaultValue=0))
        self.add_advanced(QgsProcessingParameterEnum(
            self.PROBABILITY_TYPE, "Probability output type", PROBABILITY_TYPES, defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Class map"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_PROBABILITIES, "Class probabilities", optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_MAP, "Colour map (RGBA)", optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber(self.VALID_PIXELS, "Valid pixels classified"))

    def canExecute(self):  # noqa: N802
        return worker_ready()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        model = self.parameterAsFile(parameters, self.MODEL, context)
        metadata = model_metadata(model)  # checked here, before the worker starts
        names, colors = names_and_colors(metadata)
        scene = raster_source(self, parameters, self.INPUT, context, "scene")
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        probabilities = self.parameterAsOutputLayer(parameters, self.OUTPUT_PROBABILITIES,
                                                    context) or None
        colour_map = self.parameterAsOutputLayer(parameters, self.OUTPUT_MAP, context) or None
        params = dict(model=model, input=scene, output=output,
                      output_probabilities=probabilities, output_map=colour_map,
                      tta=TTA_CHOICES[self.parameterAsEnum(parameters, self.TTA, context)],
                      batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
                      precision=PRECISIONS[self.parameterAsEnum(parameters, self.PRECISION,
                                                                context)],
                      probability_dtype=PROBABILITY_TYPES[self.parameterAsEnum(
                          parameters, self.PROBABILITY_TYPE, context)])
        tile = self.parameterAsInt(parameters, self.TILE_SIZE, context)
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)
        if tile > 0:
            params["tile_size"] = tile
        if overlap >= 0:
            params["overlap"] = overlap
        result = run_in_worker("predict", feedback, **params)
        try:
            qml = write_qml(output, names, colors)
        except RuntimeError as err:
            raise QgsProcessingException(f"The class map was written but could not be "
                                         f"styled: {err}") from None
        feedback.pushInfo(f"Style written to {qml}")
        ClassStylePostProcessor.attach(context, output, names, colors)
        outputs = {self.OUTPUT: output, self.OUTPUT_STYLE: qml,
                   self.VALID_PIXELS: result.get("valid_pixels")}
        if probabilities:
            outputs[self.OUTPUT_PROBABILITIES] = probabilities
        if colour_map:
            outputs[self.OUTPUT_MAP] = colour_map
        if not os.path.exists(output):
            raise QgsProcessingException(f"The worker finished but {output} is missing.")
        return outputs
