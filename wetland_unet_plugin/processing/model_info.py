"""Reads a model's metadata in QGIS's process (no TensorFlow) with errors mapped."""

from qgis.core import QgsProcessingException

from ..core.classes import default_colors
from ..core.feedback import CoreError
from ..core.modelfile import read_metadata


def model_metadata(path):
    """Return a model file's metadata or raise a QgsProcessingException that says why not."""
    try:
        return read_metadata(path)
    except CoreError as err:
        raise QgsProcessingException(str(err)) from None


def names_and_colors(metadata):
    """Class names and colours of a model (default colours when it has none)."""
    names = list(metadata.get("class_names") or [])
    colors = list(metadata.get("class_colors") or []) or default_colors(names)
    return names, colors
