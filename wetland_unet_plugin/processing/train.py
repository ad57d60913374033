"""wetlandunet:train - train a U-Net from aligned image/mask pairs (runs in the worker)."""

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputBoolean,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.data import VAL_SPLITS
from ..core.train import (
    DEFAULT_EARLY_STOPPING_PATIENCE,
    DEFAULT_EPOCHS,
    DEFAULT_LR_SCHEDULE,
    DEFAULT_REDUCE_LR_PATIENCE,
    LR_SCHEDULES,
)
from .base import WetlandAlgorithm
from .feedback import run_in_worker
from .tensorflow_check import worker_ready

LOSSES = ["categorical", "binary"]


class TrainAlgorithm(WetlandAlgorithm):
    """Train a U-Net on random patches of aligned image/mask pairs and write one model file."""

    IMAGES = "IMAGES"
    MASKS = "MASKS"
    CLASS_NAMES = "CLASS_NAMES"
    CLASS_COLORS = "CLASS_COLORS"
    CLASS_WEIGHTS = "CLASS_WEIGHTS"
    PATCH_SIZE = "PATCH_SIZE"
    BATCH_SIZE = "BATCH_SIZE"
    TRAIN_SIZE = "TRAIN_SIZE"
    VAL_SIZE = "VAL_SIZE"
    EPOCHS = "EPOCHS"
    VAL_FRACTION = "VAL_FRACTION"
    AUGMENT = "AUGMENT"
    FILTERS = "FILTERS"
    DEPTH = "DEPTH"
    LEARNING_RATE = "LEARNING_RATE"
    SEED = "SEED"
    INIT_MODEL = "INIT_MODEL"
    BANDS = "BANDS"
    LOSS = "LOSS"
    EARLY_STOPPING = "EARLY_STOPPING"
    REDUCE_LR = "REDUCE_LR"
    LR_SCHEDULE = "LR_SCHEDULE"
    VAL_SPLIT = "VAL_SPLIT"
    JITTER = "JITTER"
    DROPOUT = "DROPOUT"
    TIME_LIMIT = "TIME_LIMIT"
    XLA = "XLA"
    SPECTRAL_SKIP = "SPECTRAL_SKIP"
    BALANCE_CLASSES = "BALANCE_CLASSES"
    KEEP_BEST_ON_CANCEL = "KEEP_BEST_ON_CANCEL"
    TENSORBOARD_DIR = "TENSORBOARD_DIR"
    OUTPUT_MODEL = "OUTPUT_MODEL"
    OUTPUT_REPORT = "OUTPUT_REPORT"
    EPOCHS_RUN = "EPOCHS_RUN"
    VAL_ACCURACY = "VAL_ACCURACY"
    VAL_MEAN_IOU = "VAL_MEAN_IOU"
    CANCELED = "CANCELED"

    ALG_ID = "train"
    DISPLAY_NAME = "Train U-Net"
    GROUP_ID = "deeplearning"
    GROUP = "Deep learning"
    HELP = (
        "Trains a U-Net on random square patches of one or more aligned image/mask pairs "
        "(use 'Align image and mask' first) and writes one self-describing model file "
        "(.keras: the network plus class names and colours, bands, normalisation, training "
        "parameters and validation metrics) and an HTML report with loss/accuracy curves, "
        "per-class IoU/F1 and a confusion matrix.\n\n"
        "Masks: single-band class ids 1..N (0 or nodata = unlabelled, ignored by the loss) "
        "or multi-band one-hot. Validation patches come from a spatially separate strip "
        "(the last VAL_FRACTION of each image's rows), or, with VAL_SPLIT 'whole images', "
        "from VAL_FRACTION of the images held back whole (the other images then train on "
        "every row). The learning rate warms up over the first 5% of the steps, then "
        "decays along a cosine to 1% at the end of EPOCHS, or of TIME_LIMIT minutes when "
        "that comes first (LR_SCHEDULE; 'reduce on plateau' halves it instead after "
        "REDUCE_LR epochs without progress). XLA compiles the training step (on CPUs too), "
        "which halves the CPU time per patch of small networks. SPECTRAL_SKIP gives the "
        "U-Net's last layers each pixel's own band values, so pixels unlike their "
        "neighbours keep their class instead of being smoothed away. BANDS picks input bands "
        "(e.g. 1,2,3,7); predict applies the same choice. TensorFlow runs in a separate "
        "worker process, never inside QGIS.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.IMAGES, "Images", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.MASKS, "Masks (same order as the images)", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_NAMES, "Class names for ids 1..N (e.g. water,wetland,forest)"))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_COLORS, "Class colours (#rrggbb,...; empty = automatic)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_WEIGHTS, "Class weights ('auto' or numbers)", defaultValue="auto"))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, "Bands to use, in order (e.g. 1,2,3,7; empty = all)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.EPOCHS, "Epochs", QgsProcessingParameterNumber.Integer, defaultValue=DEFAULT_EPOCHS,
            minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            self.PATCH_SIZE, "Patch size (pixels, multiple of 2^DEPTH)",
            QgsProcessingParameterNumber.Integer, defaultValue=160, minValue=8))
        self.addParameter(QgsProcessingParameterNumber(
            self.BATCH_SIZE, "Batch size", QgsProcessingParameterNumber.Integer, defaultValue=8,
            minValue=1))
        self.add_advanced(QgsProcessingParameterNumber(
            self.TRAIN_SIZE, "Training patches per epoch", QgsProcessingParameterNumber.Integer,
            defaultValue=2000, minValue=1))
        self.add_advanced(QgsProcessingParameterNumber(
            self.VAL_SIZE, "Validation patches", QgsProcessingParameterNumber.Integer,
            defaultValue=1000, minValue=1))
        self.add_advanced(QgsProcessingParameterNumber(
            self.VAL_FRACTION, "Validation fraction (bottom rows of each image)",
            QgsProcessingParameterNumber.Double, defaultValue=0.25, minValue=0.0, maxValue=0.9))
        self.add_advanced(QgsProcessingParameterEnum(
            self.VAL_SPLIT, "Validation data",
            ["a strip of every image (the last VAL_FRACTION of rows)",
             "whole images (VAL_FRACTION of the images held back)"], defaultValue=0))
        self.add_advanced(QgsProcessingParameterBoolean(
            self.AUGMENT, "Augment with flips and rotations", defaultValue=True))
        self.add_advanced(QgsProcessingParameterBoolean(
            self.BALANCE_CLASSES, "Balance classes when drawing patches (else in proportion "
            "to their pixels)", defaultValue=True))
        self.add_advanced(QgsProcessingParameterNumber(
            self.JITTER, "Radiometric jitter with augmentation (per band gain/offset, "
            "normalised units, 0 = off)", QgsProcessingParameterNumber.Double,
            defaultValue=0.0, minValue=0.0, maxValue=0.5))
        self.add_advanced(QgsProcessingParameterNumber(
            self.DROPOUT, "Spatial dropout of the deeper blocks",
            QgsProcessingParameterNumber.Double, defaultValue=0.1, minValue=0.0, maxValue=0.9))
        self.add_advanced(QgsProcessingParameterNumber(
            self.FILTERS, "Filters of the first level", QgsProcessingParameterNumber.Integer,
            defaultValue=32, minValue=1))
        self.add_advanced(QgsProcessingParameterNumber(
            self.DEPTH, "Depth (down-sampling steps)", QgsProcessingParameterNumber.Integer,
            defaultValue=5, minValue=1, maxValue=8))
        self.add_advanced(QgsProcessingParameterNumber(
            self.LEARNING_RATE, "Learning rate (Adam)", QgsProcessingParameterNumber.Double,
            defaultValue=0.001, minValue=0.0))
        self.add_advanced(QgsProcessingParameterNumber(
            self.SEED, "Random seed (empty = random; same seed, same model on CPU)",
            QgsProcessingParameterNumber.Integer, optional=True))
        self.add_advanced(QgsProcessingParameterFile(
            self.INIT_MODEL, "Start from model (fine-tune or resume)", extension="keras",
            optional=True))
        self.add_advanced(QgsProcessingParameterEnum(
            self.LOSS, "Loss", ["softmax + weighted categorical cross-entropy (one class per "
                                "pixel)", "sigmoid + weighted binary cross-entropy (multi-label "
                                "one-hot masks)"], defaultValue=0))
        self.add_advanced(QgsProcessingParameterNumber(
            self.EARLY_STOPPING, "Early stopping patience (epochs, 0 = off)",
            QgsProcessingParameterNumber.Integer, defaultValue=DEFAULT_EARLY_STOPPING_PATIENCE,
            minValue=0))
        self.add_advanced(QgsProcessingParameterNumber(
            self.REDUCE_LR,
            "Reduce learning rate on plateau after (epochs, 0 = off; plateau schedule only)",
            QgsProcessingParameterNumber.Integer, defaultValue=DEFAULT_REDUCE_LR_PATIENCE,
            minValue=0))
        self.add_advanced(QgsProcessingParameterEnum(
            self.LR_SCHEDULE, "Learning-rate schedule",
            ["reduce on plateau (REDUCE_LR)", "cosine decay over all epochs (5% warmup)"],
            defaultValue=LR_SCHEDULES.index(DEFAULT_LR_SCHEDULE)))
        self.add_advanced(QgsProcessingParameterNumber(
            self.TIME_LIMIT, "Training time limit (minutes of fitting, 0 = none; the cosine "
            "schedule ends with it)", QgsProcessingParameterNumber.Double, defaultValue=0.0,
            minValue=0.0))
        self.add_advanced(QgsProcessingParameterBoolean(
            self.XLA, "Compile training with XLA (about half the CPU time per patch for small "
            "networks)", defaultValue=True))
        self.add_advanced(QgsProcessingParameterBoolean(
            self.SPECTRAL_SKIP, "Spectral skip: the last layers also see each pixel's band "
            "values (new models; fine-tuning keeps the model's)", defaultValue=True))
        self.add_advanced(QgsProcessingParameterBoolean(
            self.KEEP_BEST_ON_CANCEL, "On cancel, keep the best model so far",
            defaultValue=True))
        self.add_advanced(QgsProcessingParameterFolderDestination(
            self.TENSORBOARD_DIR, "TensorBoard log folder", optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_MODEL, "Model file", "Wetland U-Net model (*.keras)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_REPORT, "Training report", "HTML files (*.html)", optional=True))
        self.addOutput(QgsProcessingOutputNumber(self.EPOCHS_RUN, "Epochs run"))
        self.addOutput(QgsProcessingOutputNumber(self.VAL_ACCURACY, "Validation accuracy"))
        self.addOutput(QgsProcessingOutputNumber(self.VAL_MEAN_IOU, "Validation mean IoU"))
        self.addOutput(QgsProcessingOutputBoolean(
            self.CANCELED, "Canceled (the model is the best one before the cancel)"))

    def canExecute(self):  # noqa: N802
        return worker_ready()

    def _paths(self, parameters, name, context):
        layers = self.parameterAsLayerList(parameters, name, context)
        if not layers:
            raise QgsProcessingException(f"{name}: give at least one raster layer.")
        paths = []
        for layer in layers:
            if layer.providerType() != "gdal":
                raise QgsProcessingException(f"{name}: '{layer.name()}' is not a file raster; "
                                             "save it as a GeoTIFF first.")
            paths.append(layer.source())
        return paths

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        seed = parameters.get(self.SEED)
        tensorboard = self.parameterAsString(parameters, self.TENSORBOARD_DIR, context)
        output_model = self.parameterAsFileOutput(parameters, self.OUTPUT_MODEL, context)
        if not output_model.lower().endswith(".keras"):
            output_model = os.path.splitext(output_model)[0] + ".keras"
        output_report = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context) or None
        params = dict(
            images=self._paths(parameters, self.IMAGES, context),
            masks=self._paths(parameters, self.MASKS, context),
            class_names=self.parameterAsString(parameters, self.CLASS_NAMES, context),
            class_colors=self.parameterAsString(parameters, self.CLASS_COLORS, context) or None,
            class_weights=self.parameterAsString(parameters, self.CLASS_WEIGHTS, context) or "auto",
            bands=self.parameterAsString(parameters, self.BANDS, context) or None,
            epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
            patch_size=self.parameterAsInt(parameters, self.PATCH_SIZE, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            train_size=self.parameterAsInt(parameters, self.TRAIN_SIZE, context),
            val_size=self.parameterAsInt(parameters, self.VAL_SIZE, context),
            val_fraction=self.parameterAsDouble(parameters, self.VAL_FRACTION, context),
            augment=self.parameterAsBoolean(parameters, self.AUGMENT, context),
            filters=self.parameterAsInt(parameters, self.FILTERS, context),
            depth=self.parameterAsInt(parameters, self.DEPTH, context),
            learning_rate=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            seed=None if seed in (None, "") else self.parameterAsInt(parameters, self.SEED,
                                                                      context),
            init_model=self.parameterAsFile(parameters, self.INIT_MODEL, context) or None,
            loss=LOSSES[self.parameterAsEnum(parameters, self.LOSS, context)],
            early_stopping_patience=self.parameterAsInt(parameters, self.EARLY_STOPPING, context),
            reduce_lr_patience=self.parameterAsInt(parameters, self.REDUCE_LR, context),
            lr_schedule=LR_SCHEDULES[self.parameterAsEnum(parameters, self.LR_SCHEDULE,
                                                          context)],
            val_split=VAL_SPLITS[self.parameterAsEnum(parameters, self.VAL_SPLIT, context)],
            jitter=self.parameterAsDouble(parameters, self.JITTER, context),
            dropout=self.parameterAsDouble(parameters, self.DROPOUT, context),
            time_limit=self.parameterAsDouble(parameters, self.TIME_LIMIT, context),
            xla=self.parameterAsBoolean(parameters, self.XLA, context),
            spectral_skip=self.parameterAsBoolean(parameters, self.SPECTRAL_SKIP, context),
            balance_classes=self.parameterAsBoolean(parameters, self.BALANCE_CLASSES, context),
            keep_best_on_cancel=self.parameterAsBoolean(parameters, self.KEEP_BEST_ON_CANCEL,
                                                        context),
            tensorboard_dir=tensorboard or None,
            output_model=output_model,
            output_report=output_report,
        )
        result = run_in_worker("train", feedback, **params)
        validation = result.get("validation") or {}
        if result.get("canceled"):
            feedback.pushWarning("Training was canceled; the best model so far was kept: "
                                 f"{result.get('output_model')}")
        return {
            self.OUTPUT_MODEL: result.get("output_model"),
            self.OUTPUT_REPORT: result.get("output_report"),
            self.EPOCHS_RUN: result.get("epochs_run"),
            self.VAL_ACCURACY: validation.get("overall_accuracy"),
            self.VAL_MEAN_IOU: validation.get("mean_iou"),
            self.CANCELED: bool(result.get("canceled")),
        }
