"""``predict_many``: classify many scenes with one loaded model, the ``predictmany`` job.

Scenes are classified one after the other by ``predict_scene`` with the model
loaded once (``cache``); each gets ``<item id or stem>_classes.tif`` in the
output folder. A scene that fails (unreadable, wrong bands, no valid pixel, a
map without CRS) becomes a ``failed`` row with its reason and the batch goes on;
a cancel stops the batch, keeps the finished scenes and leaves nothing of the
scene in progress (``predict_scene`` writes atomically). The table
(``scenetable``) and the optional mosaic (``mosaic``) are written at the end.
"""

from __future__ import annotations

import os

from .. import raster as rasterlib
from ..atomic import remove_quietly
from ..feedback import Canceled, CoreError, Feedback, SubFeedback
from ..modelfile import read_metadata
from ..mosaic import build_mosaic
from ..scenetable import GOOD, acquired, area_values, class_areas, item_id, write_table
from ..schema.many import PREDICT_MANY
from .cache import resolve_model
from .scene import predict_scene
from .spec import model_spec

#: Share of the progress bar the mosaic takes when there is one.
MOSAIC_SHARE = 0.1
#: The files of a scene in the output folder: ``<item id or stem><suffix>``.
SUFFIXES = ("_classes.tif", "_probabilities.tif", "_uncertainty.tif")
#: The table's name in the output folder when OUTPUT_TABLE is empty.
DEFAULT_TABLE = "scenes.csv"


def output_names(inputs: list, folder: str) -> list:
    """``(classes, probabilities, uncertainty)`` paths in ``folder`` for each scene.

    Raises:
        CoreError: when two scenes would write the same map (same item id or stem).
    """
    seen = {}
    paths = []
    for scene in inputs:
        item = item_id(scene)
        if item in seen:
            raise CoreError(
                f"The scenes '{seen[item]}' and '{scene}' would both write {item}_classes.tif: "
                "rename one, or classify them in two runs with different output folders."
            )
        seen[item] = scene
        base = os.path.join(folder, item)
        paths.append(tuple(base + suffix for suffix in SUFFIXES))
    return paths


def prepare_folder(folder: str) -> str:
    """Create the output folder if needed and make sure it can be written.

    Raises:
        CoreError: naming the folder and the fix.
    """
    if not folder:
        raise CoreError("OUTPUT_FOLDER is required: choose a folder for the class maps.")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise CoreError(
            f"The OUTPUT_FOLDER '{folder}' cannot be created ({err.strerror}): choose a "
            "folder you can write to."
        ) from None
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise CoreError(
            f"The OUTPUT_FOLDER '{folder}' is not a writable folder: choose a folder you can "
            "write to."
        )
    return folder


def predict_many(
    inputs=None,
    model=None,
    output_folder=None,
    output_table=None,
    output_mosaic=None,
    *,
    feedback=None,
    **params,
) -> dict:
    """Classify many scenes with one model into a folder of maps, a table and a mosaic.

    Args:
        inputs, model, output_folder, output_table, output_mosaic, **params: the
            parameters of ``schema.PREDICT_MANY`` by keyword (``python -m
            wetland_unet_plugin.core predictmany --help``): ``inputs`` (scene paths),
            ``model`` (a model file or ``LoadedModel``), ``tta``, ``prepare`` and
            ``mask_classes`` (Planet preparation, see ``_prepare``), ``skip_existing``,
            ``keep_probabilities``, ``keep_uncertainty``, ``target_crs`` (the mosaic's),
            ``tile_size``, ``overlap``, ``batch_size``, ``precision``; ``output_table``
            defaults to ``scenes.csv`` in the folder.
        feedback: progress (scenes, and tiles within a scene), messages, cancel.

    Returns:
        dict with ``output_folder``, ``output_table``, ``output_mosaic`` (None when not
        asked or no scene was mapped), ``scenes_done`` (mapped now or kept),
        ``scenes_failed``, ``maps`` (the class maps of the good scenes),
        ``uncertainty_maps`` (theirs, with ``keep_uncertainty``), ``rows``
        (the table's scene rows), ``class_names``.

    Raises:
        CoreError: for inputs that cannot work at all (no model, an unwritable folder,
            two scenes with one name), before any scene is classified.
        Canceled: when canceled; finished scenes stay, the one in progress is removed.
    """
    feedback = feedback or Feedback()
    p = PREDICT_MANY.check(
        dict(
            params,
            inputs=inputs,
            model=model,
            output_folder=output_folder,
            output_table=output_table,
            output_mosaic=output_mosaic,
        )
    )
    inputs, folder, mosaic = p["inputs"], p["output_folder"], p["output_mosaic"] or None
    paths = output_names(inputs, folder)
    prepare_folder(folder)
    table = p["output_table"] or os.path.join(folder, DEFAULT_TABLE)
    rasterlib.check_output_path(table, inputs, what="OUTPUT_TABLE")
    if mosaic:
        rasterlib.check_output_path(mosaic, inputs, what="OUTPUT_MOSAIC")
    names, loaded = model_classes(p["model"], feedback)
    n_classes = len(names)
    keep = bool(p["keep_probabilities"] or mosaic)
    scene_args = {k: p[k] for k in ("tta", "tile_size", "overlap", "batch_size", "precision")}
    share = 1.0 - (MOSAIC_SHARE if mosaic else 0.0)
    n = len(inputs)
    rows = []
    uncertain = bool(p["keep_uncertainty"])
    for k, (scene, (classes, probabilities, uncertainty)) in enumerate(zip(inputs, paths)):
        feedback.check_canceled()
        feedback.info(f"Scene {k + 1}/{n}: {scene}")
        row = {
            "scene": scene,
            "item_id": item_id(scene),
            "acquired": acquired(scene),
            "status": "done",
            "message": "",
        }
        sub = SubFeedback(feedback, share * k / n, share * (k + 1) / n)
        wanted = [classes] + [probabilities] * keep + [uncertainty] * uncertain
        exists = all(os.path.exists(path) for path in wanted)
        skip = p["skip_existing"] and exists
        if not skip and loaded is None:  # loaded once, when the first scene needs it
            loaded = resolve_model(p["model"])
        try:
            if skip:
                row.update(status="skipped", message="outputs exist (SKIP_EXISTING)")
                feedback.info(f"  {os.path.basename(classes)} exists: skipped.")
            else:
                source = scene
                if p["prepare"]:
                    source = _prepare(scene, folder, p["mask_classes"], row, sub)
                try:
                    outputs = {
                        "output_probabilities": probabilities if keep else None,
                        "output_uncertainty": uncertainty if uncertain else None,
                    }
                    rest = SubFeedback(sub, 0.2, 1.0)
                    _classify(loaded, source, classes, outputs, scene_args, rest)
                finally:
                    if source != scene:
                        remove_quietly(source)
            _, hectares = class_areas(classes, n_classes)
            row.update(area_values(names, hectares))
        except Canceled:
            feedback.info(f"Canceled during scene {k + 1}/{n}; {k} finished scenes are kept.")
            raise
        except Exception as err:  # one bad scene (any error) must not stop the batch
            message = str(err) if isinstance(err, CoreError) else f"{type(err).__name__}: {err}"
            row.update(status="failed", message=message)
            feedback.warning(f"Scene {scene} failed: {message}")
        rows.append(row)
        sub.progress(1.0)
    good = [paths[k] for k, r in enumerate(rows) if r["status"] in GOOD]
    failed = len(rows) - len(good)
    write_table(table, rows, names)
    feedback.info(f"Table of {n} scenes written to {table}.")
    if failed:
        feedback.warning(f"{failed} of {n} scenes failed; the table says why.")
    made = None
    if mosaic and good:
        feedback.info(f"Mosaicking {len(good)} scenes into {mosaic}.")
        pairs = [g[:2] for g in good]
        build_mosaic(pairs, mosaic, p["target_crs"], SubFeedback(feedback, share, 1.0))
        made = mosaic
    elif mosaic:
        feedback.warning("No scene was mapped, so no mosaic was written.")
    feedback.progress(1.0)
    return {
        "output_folder": folder,
        "output_table": table,
        "output_mosaic": made,
        "scenes_done": len(good),
        "scenes_failed": failed,
        "maps": [g[0] for g in good],
        "uncertainty_maps": [g[2] for g in good if uncertain],
        "rows": rows,
        "class_names": names,
    }


def model_classes(model, feedback) -> tuple:
    """The class names of MODEL, read without TensorFlow when it is a file (a resumed run
    whose scenes all exist never loads the network), and the model when already loaded.

    Returns:
        (class names of ids 1..N, a ``LoadedModel`` or None).

    Raises:
        CoreError: for a file that is not a Wetland U-Net model.
    """
    if isinstance(model, (str, os.PathLike)):
        meta = read_metadata(os.fspath(model))
        names = [str(n) for n in meta.get("class_names") or []]
        n_classes = int(meta.get("n_classes") or len(names))
        names += [f"class {i + 1}" for i in range(len(names), n_classes)]
        return names[:n_classes], None
    loaded = resolve_model(model)
    spec = model_spec(loaded, feedback)
    return [str(n) for n in spec.class_names[: spec.n_classes]], loaded


def _prepare(scene, folder, mask_classes, row, feedback) -> str:
    """Run ``prepare_scene`` on a scene whose usable-data mask is delivered beside it
    (into a hidden file of the output folder, removed after the prediction); other
    scenes are used as they are. Returns the path to predict; the row's ``acquired``
    takes the delivery's metadata when it has some."""
    from ..planet.naming import find_udm
    from ..planet.prepare import prepare_scene

    if not find_udm(scene):
        return scene
    prepared = os.path.join(folder, f".{row['item_id']}_prepared.tif")
    result = prepare_scene(
        input=scene,
        output=prepared,
        mask_classes=mask_classes,
        feedback=SubFeedback(feedback, 0.0, 0.2),
    )
    row["acquired"] = result.get("acquired") or row["acquired"]
    feedback.info(f"  prepared with {os.path.basename(result['udm'])}.")
    return prepared


def _classify(loaded, scene, classes, outputs, scene_args, feedback) -> None:
    """Run ``predict_scene`` on one scene; a scene without a valid pixel fails (its
    all-nodata outputs are removed).

    Raises:
        CoreError: for a scene without valid pixels (and whatever predict_scene raises).
    """
    result = predict_scene(
        loaded,
        scene,
        classes,
        feedback=feedback,
        **outputs,
        **scene_args,
    )
    if result["valid_pixels"] == 0:
        for path in [classes, *outputs.values()]:
            if path:
                remove_quietly(path)
        raise CoreError(
            "The scene has no valid pixel (all nodata, NaN or masked): nothing to classify."
        )
