"""Wetland U-Net core: QGIS-free preparation, training, prediction and evaluation.

Importing this package is cheap: TensorFlow is imported only by the functions
that need it (``load_model``, training and prediction).
"""

from .feedback import Canceled, CoreError, Feedback  # noqa: F401
from .modelfile import LoadedModel, load_model, read_metadata, save_model  # noqa: F401
