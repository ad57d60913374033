"""wetlandunet:samplepoints - stratified random sample of a class map (in QGIS's process)."""

from ..core.schema import SAMPLEPOINTS
from .base import WetlandAlgorithm


class SamplePointsAlgorithm(WetlandAlgorithm):
    """Points for an accuracy assessment: a stratified random sample of the map's classes."""

    JOB = SAMPLEPOINTS
