"""Tiled, overlapping, blended prediction of a scene, streamed to disk.

``predict_scene`` (in ``scene``) is the job the worker and the CLI run. The
package is split by responsibility:

* ``cache``: loaded models kept per process (a batch of scenes loads once);
* ``spec``: what prediction reads from a model's metadata, and scene checks;
* ``folding``: mixed-precision rebuild and the folded inference graph;
* ``predictors``: compiled ``f(batch) -> probabilities`` with TTA;
* ``tiling``: tile layout, blending windows, cutting tiles to their valid part;
* ``reader``: the strip reader (validity, normalisation, mirror padding);
* ``outputs``: output checks, datasets, blending buffer and block writer;
* ``pipeline``: reader and writer threads around the model;
* ``scene``: the orchestration.

Importing it does not import TensorFlow; the functions that need it do.
"""

from ..schema.model import PRECISIONS
from ..schema.model import PROBABILITY_TYPES as PROBABILITY_DTYPES
from .cache import clear_model_cache, get_cached_model, model_cache_info
from .folding import cast_model, inference_function
from .predictors import get_predictor
from .scene import predict_scene, run_scene
from .spec import ModelSpec, model_spec
from .tiling import (
    TileGrid,
    default_overlap,
    default_tile_size,
    plan_tiles,
    reflect_index,
    resolve_tiling,
    valid_crop,
    weight_window,
    weight_window_1d,
)

__all__ = [
    "predict_scene",
    "run_scene",
    "get_cached_model",
    "model_cache_info",
    "clear_model_cache",
    "get_predictor",
    "cast_model",
    "inference_function",
    "model_spec",
    "ModelSpec",
    "plan_tiles",
    "TileGrid",
    "default_tile_size",
    "default_overlap",
    "resolve_tiling",
    "valid_crop",
    "weight_window",
    "weight_window_1d",
    "reflect_index",
    "PRECISIONS",
    "PROBABILITY_DTYPES",
]
