"""Training a U-Net from aligned image/mask pairs (``train_model``, the ``train`` job).

Modules, in the order a run uses them:

- ``checks``: the checks run before any work (the parameters themselves are
  declared, with defaults and choices, in ``core/schema/model.py``).
- ``pairs``: image/mask pairs opened and checked; training/validation splits.
- ``masks``: the mask decoder and the per-mask scan (class counts, position pools).
- ``statistics``: per-band normalisation statistics from a sample of every image.
- ``patches``: patch sources and the reproducible, class-balanced patch sampler.
- ``prepare``: the data side of a run, from split pairs to a ready sampler.
- ``weights``: the loss's class weights ("auto", "equal" or given).
- ``dataset``: the tf.data pipeline Keras trains on.
- ``schedule``: learning-rate schedules.
- ``devices``: device strategy (several GPUs, mixed precision) and seeding.
- ``keras_parts``: the loss, metric, callbacks and ``compile_model`` (imports Keras).
- ``metadata``: the model file's metadata and the job's result.
- ``train``: ``train_model``, the steps of a run.

Importing this package does not import TensorFlow or Keras.
"""

from .train import train_model

__all__ = ["train_model"]
