"""wetlandunet:evaluate - accuracy of a class map against a reference (in QGIS's process)."""

from ..core.schema import EVALUATE
from .base import WetlandAlgorithm


class EvaluateAlgorithm(WetlandAlgorithm):
    """Confusion matrix, overall accuracy, kappa and per-class IoU/F1 of a class map."""

    JOB = EVALUATE
