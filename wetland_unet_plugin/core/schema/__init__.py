"""One schema per job: every parameter declared once, here.

The core CLI, the Processing algorithms and the worker requests are generated
from these declarations (``base.Job``/``base.Param``); a parameter is added in
its job's schema and nowhere else.
"""

from .assess import EVALUATE, STYLE
from .base import Job, Output, Param
from .environment import DIAGNOSTICS, SETUP_WORKER
from .many import MERGE_MANY, PREDICT_MANY
from .mapping import CLEANMAP
from .model import PREDICT, TRAIN
from .planet import PREPARE_SCENE
from .prepare import ALIGN, CLEAN
from .sampling import SAMPLEPOINTS

#: Every job, in Toolbox order.
JOBS = (
    ALIGN,
    CLEAN,
    PREPARE_SCENE,
    TRAIN,
    PREDICT,
    PREDICT_MANY,
    MERGE_MANY,
    EVALUATE,
    SAMPLEPOINTS,
    STYLE,
    CLEANMAP,
    SETUP_WORKER,
    DIAGNOSTICS,
)
BY_NAME = {job.name: job for job in JOBS}
BY_ALG_ID = {job.alg_id: job for job in JOBS}

__all__ = [
    "Job",
    "Output",
    "Param",
    "JOBS",
    "BY_NAME",
    "BY_ALG_ID",
    "ALIGN",
    "CLEAN",
    "PREPARE_SCENE",
    "TRAIN",
    "PREDICT",
    "PREDICT_MANY",
    "MERGE_MANY",
    "EVALUATE",
    "STYLE",
    "CLEANMAP",
    "SAMPLEPOINTS",
    "SETUP_WORKER",
    "DIAGNOSTICS",
]
