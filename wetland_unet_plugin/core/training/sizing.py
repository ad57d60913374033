"""MODEL_SIZE, TIME_LIMIT and EARLY_STOPPING's automatic values: a network, a budget and a
stopping rule that suit the machine and the schedule.

The design's first defaults (FILTERS 32, DEPTH 5, 160 px patches: 31 M parameters) are
sized for a GPU; on a laptop CPU their 20 epochs take hours. ``small`` is the layout the
quality benchmark measured best on a 2-core CPU within 9 minutes (32 px patches, DEPTH 3,
FILTERS 16: OA 0.94 on held-out tiles, docs/quality.md); ``large`` keeps the first
defaults for GPUs; ``medium`` lies between. ``auto`` picks small without a GPU visible to
TensorFlow and large with one. Each size also sets BATCH_SIZE, LEARNING_RATE and EPOCHS
(``SIZES``). Explicit values always win; fine-tuning keeps the init model's
architecture (and its patch size unless given) and the large size's schedule.
"""

from __future__ import annotations

import os

from ..feedback import CoreError, Feedback
from .devices import DEVICES_ENV

#: What each MODEL_SIZE sets: a parameter left empty takes its size's value, a typed one
#: wins. Small's schedule (BATCH_SIZE, LEARNING_RATE, EPOCHS) was measured on the quality
#: benchmark (docs/quality.md): a batch of 16 patches of 32 px costs 35 % less CPU time
#: per patch than 8, so 30 epochs take the time 20 took; held-out OA 0.941 / 0.939 / 0.941
#: (seeds 1-3, BALANCE_CLASSES auto) against 0.942 / 0.941 / 0.942 for the benchmark's
#: 9-minute layout; seed 4 0.937 against 0.942. 40 epochs scored 0.944 / 0.941 / 0.939 /
#: 0.939 in 30 % more time and did worse on the demo, so 30 stays. Medium and large keep
#: the design's first schedule, and so does fine-tuning.
SIZES = {
    "small": dict(
        patch_size=32, depth=3, filters=16, batch_size=16, learning_rate=0.002, epochs=30
    ),
    "medium": dict(
        patch_size=64, depth=4, filters=24, batch_size=8, learning_rate=0.001, epochs=20
    ),
    "large": dict(
        patch_size=160, depth=5, filters=32, batch_size=8, learning_rate=0.001, epochs=20
    ),
}
#: TIME_LIMIT -1 (auto): minutes of fitting on a CPU; no limit on a GPU.
AUTO_CPU_MINUTES = 15.0
#: EARLY_STOPPING -1 (auto) under the plateau schedule; off under the cosine schedule.
AUTO_PLATEAU_PATIENCE = 8


def gpu_visible() -> bool:
    """True when training would run on a GPU: one visible to TensorFlow, or listed in
    $WETLAND_UNET_DEVICES (which then decides alone)."""
    listed = [d.strip().lower() for d in os.environ.get(DEVICES_ENV, "").split(",") if d.strip()]
    if listed:
        return any("gpu" in d for d in listed)
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def resolve_sizing(p: dict, init_meta: dict | None, feedback: Feedback) -> dict:
    """Fill ``p``'s patch_size, filters, depth and time_limit; return what was chosen and why.

    Args:
        p: the checked TRAIN parameters (changed in place). With ``init_meta`` filters and
            depth are already the init model's.
        init_meta: the fine-tuned model's metadata, or None.
        feedback: receives one line saying what was chosen and why.

    Raises:
        CoreError: for a TIME_LIMIT between -1 and 0.

    Returns:
        The metadata's ``model_size`` entry: ``asked``, ``used``, ``device``, ``reason``,
        ``explicit`` (the parameters given by hand), ``time_limit_asked``.
    """
    if -1.0 < p["time_limit"] < 0.0:
        raise CoreError(
            f"TIME_LIMIT must be -1 (auto: {AUTO_CPU_MINUTES:g} min on a CPU, none on a GPU), "
            f"0 (no limit) or a number of minutes (got {p['time_limit']:g})."
        )
    gpu = gpu_visible()
    device = "GPU" if gpu else "CPU"
    asked = p["model_size"]
    if init_meta is not None:
        used = "init model"
        reason = "fine-tuning keeps INIT_MODEL's architecture"
        # depth and filters are already the init model's; the schedule is large's.
        patch = int(init_meta.get("patch_size") or SIZES["large"]["patch_size"])
        table = {k: v for k, v in SIZES["large"].items() if k not in ("depth", "filters")}
        table["patch_size"] = patch
    elif asked == "auto":
        used = "large" if gpu else "small"
        reason = (
            "a GPU is visible: the large U-Net (the design's first defaults)"
            if gpu
            else "no GPU visible: the layout measured best on a 2-core CPU within 9 minutes "
            "(docs/quality.md)"
        )
        table = SIZES[used]
    else:
        used, reason = asked, "MODEL_SIZE " + asked
        table = SIZES[asked]
    explicit = [k.upper() for k in table if p[k] is not None]
    for key, value in table.items():
        if p[key] is None:
            p[key] = value
    time_asked = p["time_limit"]
    if time_asked < 0:
        p["time_limit"] = 0.0 if gpu else AUTO_CPU_MINUTES
    entry = {
        "asked": asked,
        "used": used,
        "device": device,
        "reason": reason,
        "explicit": explicit,
        "time_limit_asked": time_asked,
    }
    limit = (f"{p['time_limit']:g} min of fitting" if p["time_limit"] > 0 else "no time limit") + (
        " (TIME_LIMIT auto on a " + device + ")" if time_asked < 0 else ""
    )
    feedback.info(
        f"Model size {used} ({reason}) on a {device}: PATCH_SIZE {p['patch_size']}, "
        f"DEPTH {p['depth']}, FILTERS {p['filters']}, BATCH_SIZE {p['batch_size']}, "
        f"LEARNING_RATE {p['learning_rate']:g}, EPOCHS {p['epochs']}"
        + (f" ({', '.join(explicit)} as given)" if explicit else "")
        + f"; {limit}."
    )
    return entry


def resolve_early_stopping(p: dict, feedback: Feedback) -> int:
    """Fill ``p``'s early_stopping_patience when it is -1 (auto); return what was asked.

    The cosine schedule ends training itself, at a low learning rate, and the best
    epoch's weights are kept: stopping it early keeps weights from its high-rate start
    (measured: held-out OA 0.905 against 0.930 without, docs/quality.md). Under the
    plateau schedule, which never ends on its own, auto is AUTO_PLATEAU_PATIENCE epochs.
    """
    asked = p["early_stopping_patience"]
    if asked < 0:
        cosine = p["lr_schedule"] == "cosine"
        p["early_stopping_patience"] = 0 if cosine else AUTO_PLATEAU_PATIENCE
        feedback.info(
            "Early stopping: "
            + (
                "off (EARLY_STOPPING auto: the cosine schedule ends training; the best "
                "epoch's weights are kept)"
                if cosine
                else f"after {AUTO_PLATEAU_PATIENCE} epochs without progress (EARLY_STOPPING "
                "auto with the plateau schedule)"
            )
            + "."
        )
    return asked
