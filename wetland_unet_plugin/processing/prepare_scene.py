"""wetlandunet:preparescene - a delivered scene made analysis-ready (UDM applied, bands named)."""

from ..core.schema.planet import PREPARE_SCENE
from .base import WetlandAlgorithm


class PrepareSceneAlgorithm(WetlandAlgorithm):
    """Mask clouds, shadows and unusable data, name the bands, optionally calibrate."""

    JOB = PREPARE_SCENE
