"""wetlandunet:train - train a U-Net from aligned image/mask pairs (runs in the worker)."""

import os

from ..core.schema import TRAIN
from .base import WetlandAlgorithm
from .tensorflow_check import worker_ready


class TrainAlgorithm(WetlandAlgorithm):
    """Train a U-Net on random patches of aligned image/mask pairs and write one model file."""

    JOB = TRAIN

    def canExecute(self):
        return worker_ready()

    def prepare(self, values, parameters, context, feedback):
        model = values["output_model"]
        if model and not model.lower().endswith(".keras"):
            values["output_model"] = os.path.splitext(model)[0] + ".keras"
        return values

    def results(self, outputs, result, values, context, feedback):
        validation = result.get("validation") or {}
        if result.get("canceled"):
            feedback.pushWarning(
                "Training was canceled; the best model so far was kept: "
                f"{result.get('output_model')}"
            )
        outputs.update(
            {
                "OUTPUT_MODEL": result.get("output_model"),
                "OUTPUT_REPORT": result.get("output_report"),
                "VAL_ACCURACY": validation.get("overall_accuracy"),
                "VAL_MEAN_IOU": validation.get("mean_iou"),
                "CANCELED": bool(result.get("canceled")),
            }
        )
        return outputs
