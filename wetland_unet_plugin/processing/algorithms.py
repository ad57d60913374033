"""The list of algorithms the provider offers (one module each)."""

from .align_pair import AlignPairAlgorithm
from .clean_invalid import CleanInvalidAlgorithm
from .clean_map import CleanMapAlgorithm
from .diagnostics import DiagnosticsAlgorithm
from .evaluate import EvaluateAlgorithm
from .predict import PredictAlgorithm
from .predict_many import MergeManyAlgorithm, PredictManyAlgorithm
from .prepare_scene import PrepareSceneAlgorithm
from .sample_points import SamplePointsAlgorithm
from .setup_worker import SetupWorkerAlgorithm
from .style_classified import StyleClassifiedAlgorithm
from .train import TrainAlgorithm


def all_algorithms():
    """Return one instance of every Wetland U-Net algorithm."""
    return [
        AlignPairAlgorithm(),
        CleanInvalidAlgorithm(),
        PrepareSceneAlgorithm(),
        TrainAlgorithm(),
        PredictAlgorithm(),
        PredictManyAlgorithm(),
        MergeManyAlgorithm(),
        EvaluateAlgorithm(),
        SamplePointsAlgorithm(),
        StyleClassifiedAlgorithm(),
        CleanMapAlgorithm(),
        SetupWorkerAlgorithm(),
        DiagnosticsAlgorithm(),
    ]
