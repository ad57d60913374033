"""Schemas of the TensorFlow jobs, which run in the worker: ``train`` and ``predict``."""

from .base import Job, Output, Param

#: Learning-rate schedules: halve on a validation-loss plateau, or a linear warmup then
#: cosine decay over the planned steps (see docs/decisions.md for why cosine is the default).
LR_SCHEDULES = ("plateau", "cosine")
#: Where validation patches come from: a strip of rows of every image, or whole images.
VAL_SPLITS = ("rows", "images")
#: Loss and output activation: softmax + categorical, or sigmoid + binary (multi-label).
LOSSES = ("categorical", "binary")
#: Test-time augmentation: dihedral transforms averaged.
TTA_CHOICES = (1, 2, 4, 8)
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
PROBABILITY_TYPES = ("uint8", "float32")
#: Network sizes (FILTERS, DEPTH, PATCH_SIZE in ``training/sizing.py``); auto: small on a
#: CPU, large on a GPU.
MODEL_SIZES = ("auto", "small", "medium", "large")
#: How training patches are drawn: class-balanced (on), in proportion to the classes'
#: pixels (off), or class-balanced only when a class is rare (auto, ``training/patches.py``).
BALANCE_CHOICES = ("auto", "on", "off")

TRAIN = Job(
    name="train",
    alg_id="train",
    display_name="Train U-Net",
    group_id="deeplearning",
    group="Deep learning",
    function="training.train:train_model",
    in_worker=True,
    summary=(
        "Trains a U-Net on random square patches of one or more aligned image/mask pairs "
        "(use 'Align image and mask' first) and writes one self-describing model file "
        "(.keras: the network plus class names and colours, bands, normalisation, training "
        "parameters and validation metrics) and an HTML report with loss/accuracy curves, "
        "per-class IoU/F1 and a confusion matrix.\n\n"
        "Masks: single-band class ids 1..N (0 or nodata = unlabelled, ignored by the loss) "
        "or multi-band one-hot. Validation patches come from a spatially separate strip "
        "(the last VAL_FRACTION of each image's rows), or, with VAL_SPLIT images, "
        "from VAL_FRACTION of the images held back whole (the other images then train on "
        "every row). MODEL_SIZE sizes the network and its training for the machine (auto: "
        "small on a CPU, large on a GPU; small trains 30 epochs of batches of 16 at "
        "LEARNING_RATE 0.002, large 20 epochs of 8 at 0.001) and TIME_LIMIT's default "
        "ends a CPU run after 15 minutes of fitting; after the first epoch the log gives "
        "the time per epoch and the expected end. BASELINE trains a random forest on the "
        "same training pixels and compares it "
        "with the U-Net on the same validation pixels in the report. The learning rate "
        "warms up over the first 5% of the steps, then "
        "decays along a cosine to 1% at the end of EPOCHS, or of TIME_LIMIT minutes when "
        "that comes first (LR_SCHEDULE; plateau halves it instead after "
        "REDUCE_LR epochs without progress). EARLY_STOPPING's auto value leaves the cosine "
        "schedule to end training and stops plateau training after 8 epochs without "
        "progress; the weights of the epoch with the highest validation mean IoU are kept. "
        "BALANCE_CLASSES auto draws class-balanced patches when a class has under 5% of "
        "the labelled training pixels, else patches in proportion to the classes' pixels. "
        "CLASS_WEIGHTS auto weighs the classes equally, or by median frequency when "
        "BALANCE_CLASSES is off. "
        "XLA compiles the training step (on CPUs too), "
        "which halves the CPU time per patch of small networks. SPECTRAL_SKIP gives the "
        "U-Net's last layers each pixel's own band values, so pixels unlike their "
        "neighbours keep their class instead of being smoothed away. BANDS picks input bands "
        "(e.g. 1,2,3,7); predict applies the same choice. TensorFlow runs in a separate "
        "worker process, never inside QGIS."
    ),
    params=(
        Param("IMAGES", "rasters", "Images"),
        Param("MASKS", "rasters", "Masks (same order as the images)"),
        Param("CLASS_NAMES", "str", "Class names for ids 1..N (e.g. water,wetland,forest)"),
        Param(
            "CLASS_COLORS", "str", "Class colours (#rrggbb,...; empty = automatic)", optional=True
        ),
        Param(
            "CLASS_WEIGHTS",
            "str",
            "Class weights (auto, equal, or one number per class)",
            default="auto",
        ),
        Param(
            "BANDS",
            "str",
            "Bands to use, in order, by number or name (1,2,3,7 or blue,green,red,nir; "
            "empty = all)",
            optional=True,
        ),
        Param(
            "EPOCHS",
            "int",
            "Epochs (empty = from MODEL_SIZE: 30 small, 20 medium and large)",
            minimum=1,
            optional=True,
        ),
        Param(
            "MODEL_SIZE",
            "choice",
            "Model size (auto: small on a CPU, large on a GPU; small: 32 px patches, DEPTH 3, "
            "FILTERS 16; medium: 64, 4, 24; large: 160, 5, 32; explicit values below win)",
            default="auto",
            choices=MODEL_SIZES,
        ),
        Param(
            "PATCH_SIZE",
            "int",
            "Patch size (pixels, multiple of 2^DEPTH; empty = from MODEL_SIZE)",
            minimum=8,
            optional=True,
        ),
        Param(
            "BATCH_SIZE",
            "int",
            "Batch size (empty = from MODEL_SIZE: 16 small, 8 medium and large)",
            minimum=1,
            optional=True,
        ),
        Param(
            "TRAIN_SIZE",
            "int",
            "Training patches per epoch",
            default=2000,
            minimum=1,
            advanced=True,
        ),
        Param("VAL_SIZE", "int", "Validation patches", default=1000, minimum=1, advanced=True),
        Param(
            "VAL_FRACTION",
            "float",
            "Validation fraction (bottom rows of each image, or "
            "share of the images with VAL_SPLIT images)",
            default=0.25,
            minimum=0.0,
            maximum=0.9,
            minimum_open=True,
            advanced=True,
        ),
        Param(
            "VAL_SPLIT",
            "choice",
            "Validation data (rows: a strip of every image; images: whole images held back)",
            default="rows",
            choices=VAL_SPLITS,
            advanced=True,
        ),
        Param("AUGMENT", "bool", "Augment with flips and rotations", default=True, advanced=True),
        Param(
            "BALANCE_CLASSES",
            "choice",
            "Class-balanced patches (auto: when a class has under 5% of the labelled "
            "training pixels; on; off: in proportion to the classes' pixels)",
            default="auto",
            choices=BALANCE_CHOICES,
            advanced=True,
            help="How training patches are drawn. on: each patch is placed around a pixel of "
            "a class chosen uniformly, so rare classes are seen as often as common ones; "
            "off: around a labelled pixel chosen at random, so classes come in proportion "
            "to their pixels. auto (the default) balances only when some class has under 5% of the "
            "labelled training pixels: balancing cost 0.3 point of overall accuracy on the "
            "quality benchmark (smallest class 9.1%) but protected the rare water and "
            "wetland of the demo (4.6% and 3.3%). true/false are read as on/off.",
        ),
        Param(
            "JITTER",
            "float",
            "Radiometric jitter with augmentation (per band gain/offset, "
            "normalised units, 0 = off)",
            default=0.0,
            minimum=0.0,
            maximum=0.5,
            advanced=True,
        ),
        Param(
            "DROPOUT",
            "float",
            "Spatial dropout of the deeper blocks",
            default=0.1,
            minimum=0.0,
            maximum=0.9,
            advanced=True,
        ),
        Param(
            "FILTERS",
            "int",
            "Filters of the first level (empty = from MODEL_SIZE)",
            minimum=1,
            optional=True,
            advanced=True,
        ),
        Param(
            "DEPTH",
            "int",
            "Depth (down-sampling steps; empty = from MODEL_SIZE)",
            minimum=1,
            maximum=8,
            optional=True,
            advanced=True,
        ),
        Param(
            "LEARNING_RATE",
            "float",
            "Learning rate (Adam; empty = from MODEL_SIZE: 0.002 small, 0.001 medium and large)",
            minimum=0.0,
            optional=True,
            minimum_open=True,
            advanced=True,
        ),
        Param(
            "SEED",
            "int",
            "Random seed (empty = random; same seed, same model on CPU)",
            minimum=0,
            optional=True,
            advanced=True,
        ),
        Param(
            "INIT_MODEL",
            "file",
            "Start from model (fine-tune or resume)",
            extension="keras",
            optional=True,
            advanced=True,
        ),
        Param(
            "LOSS",
            "choice",
            "Loss (categorical: softmax, one class per pixel; binary: "
            "sigmoid, multi-label one-hot masks)",
            default="categorical",
            choices=LOSSES,
            advanced=True,
        ),
        Param(
            "EARLY_STOPPING",
            "int",
            "Early stopping patience (epochs; -1 = auto: off with the cosine schedule, which "
            "ends training itself, 8 with plateau; 0 = off)",
            default=-1,
            minimum=-1,
            advanced=True,
            key="early_stopping_patience",
        ),
        Param(
            "REDUCE_LR",
            "int",
            "Reduce learning rate on plateau after (epochs, 0 = off; plateau schedule only)",
            default=3,
            minimum=0,
            advanced=True,
            key="reduce_lr_patience",
        ),
        Param(
            "LR_SCHEDULE",
            "choice",
            "Learning-rate schedule (cosine: 5% warmup then cosine "
            "decay; plateau: halve after REDUCE_LR epochs without progress)",
            default="cosine",
            choices=LR_SCHEDULES,
            advanced=True,
        ),
        Param(
            "TIME_LIMIT",
            "float",
            "Training time limit (minutes of fitting; -1 = auto: 15 on a CPU, none on a GPU; "
            "0 = none; the cosine schedule ends with it)",
            default=-1.0,
            minimum=-1.0,
            advanced=True,
        ),
        Param(
            "XLA",
            "bool",
            "Compile training with XLA (about half the CPU time per patch for small networks)",
            default=True,
            advanced=True,
        ),
        Param(
            "SPECTRAL_SKIP",
            "bool",
            "Spectral skip: the last layers also see each pixel's "
            "band values (new models; fine-tuning keeps the model's)",
            default=True,
            advanced=True,
        ),
        Param(
            "BASELINE",
            "bool",
            "Compare with a random forest on the same pixels in the report (a few seconds)",
            default=True,
            advanced=True,
        ),
        Param(
            "KEEP_BEST_ON_CANCEL",
            "bool",
            "On cancel, keep the best model so far",
            default=True,
            advanced=True,
        ),
        Param(
            "MIN_LABELLED_FRACTION",
            "float",
            "Patches with a smaller share of labelled pixels are redrawn",
            default=0.02,
            minimum=0.0,
            maximum=1.0,
            advanced=True,
            processing=False,
        ),
        Param(
            "CACHE_LIMIT_MB",
            "float",
            "Memory for keeping small images whole (MB; larger ones are read in windows)",
            default=1024.0,
            minimum=0.0,
            advanced=True,
            processing=False,
        ),
        Param(
            "TENSORBOARD_DIR",
            "folder_out",
            "TensorBoard log folder",
            optional=True,
            create=False,
            advanced=True,
        ),
        Param(
            "CSV_LOG",
            "file_out",
            "CSV file of per-epoch metrics",
            optional=True,
            create=False,
            processing=False,
            file_filter="CSV files (*.csv)",
        ),
        Param(
            "OUTPUT_MODEL", "file_out", "Model file", file_filter="Wetland U-Net model (*.keras)"
        ),
        Param(
            "OUTPUT_REPORT",
            "file_out",
            "Training report",
            optional=True,
            file_filter="HTML files (*.html)",
        ),
    ),
    outputs=(
        Output("EPOCHS_RUN", "number", "Epochs run"),
        Output("VAL_ACCURACY", "number", "Validation accuracy"),
        Output("VAL_MEAN_IOU", "number", "Validation mean IoU"),
        Output("CANCELED", "bool", "Canceled (the model is the best one before the cancel)"),
    ),
)

#: Prediction parameters shared by ``predict`` and ``predictmany`` (declared once).
TTA_PARAM = Param(
    "TTA",
    "choice",
    "Test-time augmentation (transforms averaged: 1, 2, 4 or 8)",
    default=1,
    choices=TTA_CHOICES,
)
TILE_SIZE_PARAM = Param(
    "TILE_SIZE",
    "int",
    "Tile size (0 = automatic; multiple of 2^depth)",
    default=0,
    minimum=0,
    advanced=True,
)
OVERLAP_PARAM = Param(
    "OVERLAP",
    "int",
    "Tile overlap in pixels (-1 = automatic)",
    default=-1,
    minimum=-1,
    advanced=True,
    help="Pixels shared by neighbouring tiles, where their predictions are blended. "
    "-1: 32 for DEPTH 3 models (the CPU 'small' size), 64 for deeper ones, at most a "
    "quarter of the tile. A larger overlap costs time and leaves less trace of the tiles: "
    "with the demo's model, 32 changes the class of 0.033 % of the pixels along tile edges "
    "(against the scene predicted as one tile), 64 of 0.002 %, for 10 % more model time. "
    "Neighbouring tiles of a row run as one wide tile (two 512 px tiles) wherever that computes "
    "fewer pixels, so most of a row's overlaps are computed once.",
)
TILE_BATCH_PARAM = Param(
    "BATCH_SIZE", "int", "Tiles per batch", default=4, minimum=1, advanced=True
)
PRECISION_PARAM = Param(
    "PRECISION",
    "choice",
    "Arithmetic precision",
    default="float32",
    choices=PRECISIONS,
    advanced=True,
    help="float32 gives the same map on every machine. mixed_bfloat16 runs the network "
    "in bfloat16: on CPUs that compute it natively (AVX-512 BF16 or AMX) it can be about "
    "twice as fast (measured on an AMD EPYC VM: the small model 1.8x, the large 2.0x, a "
    "Planet-sized scene 1.7x), but it was 0.65x as fast on an older Xeon with AVX-512 "
    "BF16, so time it on your machine (make bench-precision); with the demo's model 1 % of "
    "the pixels changed class, at the same accuracy against the labels. mixed_float16 is "
    "for GPUs.",
)

PREDICT = Job(
    name="predict",
    alg_id="predict",
    display_name="Classify scene (predict)",
    group_id="deeplearning",
    group="Deep learning",
    function="inference.scene:predict_scene",
    in_worker=True,
    summary=(
        "Classifies a scene with a model from 'Train U-Net'. The scene is read in windows and "
        "predicted in overlapping tiles that are blended without seams; the model's band "
        "choice and normalisation are applied; pixels that are invalid in the input (NaN, "
        "nodata) are nodata in every output, and tiles without valid pixels are skipped.\n\n"
        "OUTPUT: class ids 1..N (uint8, 0 = nodata), loaded styled with the model's class "
        "names and colours (a .qml is written beside it). OUTPUT_PROBABILITIES: one band per "
        "class. OUTPUT_MAP: an RGBA picture in the class colours. TTA averages 1, 2, 4 or 8 "
        "flipped/rotated predictions. OUTPUT_UNCERTAINTY: float32, the entropy of the averaged "
        "probabilities divided by log(N) (0 = one class certain, 1 = all equally likely; -1 = "
        "nodata), loaded with a sequential colour ramp; with TTA > 1 a second band holds the "
        "share of the transforms whose own class differs from the final class. OUTPUT_AREAS: "
        "a CSV of pixels and "
        "hectares per class and a total row; hectares are pixels x the pixel area in metres "
        "(in a geographic CRS each row's pixel area is computed on the CRS's ellipsoid). "
        "TensorFlow runs in the worker process; it keeps the "
        "model loaded, so batches of scenes do not reload it."
    ),
    params=(
        Param("MODEL", "file", "Model (.keras)", extension="keras"),
        Param("INPUT", "raster", "Scene"),
        TTA_PARAM,
        TILE_SIZE_PARAM,
        OVERLAP_PARAM,
        TILE_BATCH_PARAM,
        PRECISION_PARAM,
        Param(
            "PROBABILITY_TYPE",
            "choice",
            "Probability output type (uint8: p x 254, nodata 255; float32: nodata -1)",
            default="uint8",
            choices=PROBABILITY_TYPES,
            advanced=True,
            key="probability_dtype",
        ),
        Param("OUTPUT", "raster_out", "Class map"),
        Param(
            "OUTPUT_PROBABILITIES", "raster_out", "Class probabilities", optional=True, create=False
        ),
        Param("OUTPUT_MAP", "raster_out", "Colour map (RGBA)", optional=True, create=False),
        Param(
            "OUTPUT_UNCERTAINTY",
            "raster_out",
            "Uncertainty (normalised entropy: 0 = certain, 1 = uniform)",
            optional=True,
            create=False,
        ),
        Param(
            "OUTPUT_AREAS",
            "file_out",
            "Areas per class (CSV: class_id, class_name, pixels, hectares)",
            optional=True,
            create=False,
            file_filter="CSV files (*.csv)",
        ),
    ),
    outputs=(
        Output("VALID_PIXELS", "number", "Valid pixels classified"),
        Output(
            "RADIOMETRIC_SHIFT",
            "number",
            "Largest band shift from the training data (training spreads)",
        ),
        Output("OUTPUT_STYLE", "file", "Style file (.qml)"),
    ),
)
