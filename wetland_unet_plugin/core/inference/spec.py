"""What prediction needs to know about a model, and whether a scene fits it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..classes import default_colors
from ..feedback import CoreError, Feedback
from ..modelfile import LoadedModel
from ..raster import valid_pixels


@dataclass
class ModelSpec:
    """What prediction needs to know about a model, read from its metadata."""

    class_names: list
    class_colors: list
    n_classes: int
    bands: list | None  # 1-based input bands, in model order; None = all
    n_channels: int  # channels the Keras model takes
    depth: int
    patch_size: int
    normalization: dict
    pixel_size: list | None
    crs_wkt: str | None
    band_names: list | None = None  # names of ``bands`` (training band descriptions); None: unnamed
    radiometry: dict | None = None  # training images' "radiometry" and "product_kind" tags


def count_pools(keras_model) -> int:
    """Number of pooling layers of a Keras model (its depth when the metadata lacks it)."""
    return sum(
        1 for layer in getattr(keras_model, "layers", []) if "Pooling2D" in type(layer).__name__
    )


def model_spec(loaded: LoadedModel, feedback: Feedback | None = None) -> ModelSpec:
    """Read a model's metadata (and Keras input shape) into a ``ModelSpec``.

    Args:
        loaded: the loaded model.
        feedback: where to warn about missing metadata.

    Returns:
        The ``ModelSpec``.
    """
    feedback = feedback or Feedback()
    meta = loaded.metadata or {}
    keras_model = loaded.keras_model
    n_channels = None
    try:
        n_channels = int(keras_model.inputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    bands = meta.get("bands")
    bands = [int(b) for b in bands] if bands else None
    if n_channels is None:
        n_channels = len(bands) if bands else int(meta.get("n_input_bands") or 0)
    n_classes = int(meta.get("n_classes") or 0)
    if not n_classes:
        try:
            n_classes = int(keras_model.outputs[0].shape[-1])
        except (AttributeError, IndexError, TypeError, ValueError):
            raise CoreError(
                "The model file does not say how many classes it has; "
                "train it again with wetlandunet:train."
            ) from None
    names = list(meta.get("class_names") or [f"class {i + 1}" for i in range(n_classes)])
    colors = list(meta.get("class_colors") or default_colors(names))
    depth = meta.get("depth")
    depth = int(depth) if depth is not None else count_pools(keras_model)
    stats = meta.get("normalization")
    if not stats or "low" not in stats or "high" not in stats:
        feedback.warning(
            "The model carries no normalisation statistics; the input is "
            "used unscaled (0..1 assumed)."
        )
        stats = {"low": [0.0] * n_channels, "high": [1.0] * n_channels}
    if len(stats["low"]) != n_channels:
        raise CoreError(
            f"The model's normalisation covers {len(stats['low'])} bands but "
            f"the network takes {n_channels}; the model file is inconsistent. "
            "Train it again."
        )
    return ModelSpec(
        class_names=names,
        class_colors=colors,
        n_classes=n_classes,
        bands=bands,
        n_channels=n_channels,
        depth=depth,
        patch_size=int(meta.get("patch_size") or 0),
        normalization=stats,
        pixel_size=meta.get("pixel_size"),
        crs_wkt=meta.get("crs"),
        band_names=_names(meta.get("band_names"), n_channels),
        radiometry=meta.get("radiometry"),
    )


def _names(names, n_channels: int) -> list | None:
    """The model's band names when every input band has one, else None."""
    if not names or len(names) != n_channels or not all(str(n or "").strip() for n in names):
        return None
    return [str(n).strip() for n in names]


def check_bands(spec: ModelSpec, dataset, path: str, feedback: Feedback | None = None) -> list:
    """The 1-based bands of ``dataset`` the model reads, in model order.

    By name when the model and the scene both have band names (the training images'
    and the scene's band descriptions, compared without case): a model trained on
    4-band Planet scenes (blue, green, red, nir) reads those four bands of an 8-band
    scene wherever they are. By number otherwise (the model's BANDS), with a warning
    when only the model has names (they cannot be checked).

    Args:
        spec: the model's ``ModelSpec``.
        dataset: the open scene.
        path: the scene's path, for messages.
        feedback: where the mapping is logged.

    Raises:
        CoreError: the scene lacks a band the model needs (named, or numbered), or has
            another band count.
    """
    feedback = feedback or Feedback()
    check_placed(dataset)
    scene_names = [str(d).strip() if d else "" for d in dataset.descriptions]
    if spec.band_names and all(scene_names):
        return _bands_by_name(spec, scene_names, path, feedback)
    indexes = _bands_by_number(spec, dataset.count, path)
    if spec.band_names:
        feedback.warning(
            f"The model reads bands named {', '.join(spec.band_names)} but '{path}' has no "
            f"band names: bands {indexes} are used by number. Prepare the scene "
            "(wetlandunet:preparescene) so its bands are picked by name."
        )
    return indexes


def _bands_by_name(spec: ModelSpec, scene_names: list, path: str, feedback: Feedback) -> list:
    """The scene's bands carrying the model's band names, the mapping logged."""
    keys = [n.lower() for n in scene_names]
    missing = [n for n in spec.band_names if n.lower() not in keys]
    if missing:
        raise CoreError(
            f"The model needs the band(s) {', '.join(spec.band_names)} but '{path}' has no "
            f"band named {', '.join(missing)} (its bands: {', '.join(scene_names)}). Use a "
            "scene from a sensor with those bands, prepared with wetlandunet:preparescene "
            "so its bands carry their names."
        )
    indexes = [keys.index(n.lower()) + 1 for n in spec.band_names]
    feedback.info(
        "Bands picked by name: "
        + ", ".join(f"{n} = band {i}" for n, i in zip(spec.band_names, indexes))
        + "."
    )
    return indexes


def _bands_by_number(spec: ModelSpec, count: int, path: str) -> list:
    """The model's band numbers, checked against the scene's band count."""
    if spec.bands:
        if len(spec.bands) != spec.n_channels:
            raise CoreError(
                f"The model lists bands {spec.bands} but its network takes "
                f"{spec.n_channels}; the model file is inconsistent."
            )
        missing = [b for b in spec.bands if b < 1 or b > count]
        if missing:
            raise CoreError(
                f"The model needs bands {spec.bands} of the input but '{path}' has "
                f"{count} band(s) (band(s) {missing} missing). Choose a scene from "
                "the sensor the model was trained on, with the same band layout."
            )
        return list(spec.bands)
    if count != spec.n_channels:
        raise CoreError(
            f"The model takes {spec.n_channels} band(s) but '{path}' has {count}. "
            "Choose a scene with the band layout the model was trained on, or "
            "train with BANDS to pick bands."
        )
    return list(range(1, count + 1))


def check_placed(dataset) -> None:
    """Refuse a scene with RPCs but no georeferencing: its map would have no place.

    Raises:
        CoreError: telling the user to orthorectify it first.
    """
    if dataset.crs is None and dataset.rpcs is not None:
        raise CoreError(
            f"'{dataset.name}' has RPC coefficients but no georeferencing (a basic / 1B "
            "scene): its map would have no place on the ground. Orthorectify it first with "
            "wetlandunet:alignpair (RPC on, with a DEM for hilly terrain) and predict on its "
            "output."
        )


def warn_grid(spec: ModelSpec, dataset, feedback: Feedback) -> None:
    """Refuse an unrectified RPC scene; warn when the scene's CRS units or pixel size are
    far from the training data's.

    Raises:
        CoreError: the scene has RPCs but no georeferencing (its map would have no place).
    """
    check_placed(dataset)
    model_crs = None
    if spec.crs_wkt:
        try:
            from rasterio.crs import CRS

            model_crs = (
                CRS.from_wkt(spec.crs_wkt)
                if "[" in spec.crs_wkt
                else CRS.from_user_input(spec.crs_wkt)
            )
        except Exception:  # an unreadable CRS only loses a warning
            model_crs = None
    scene_crs = dataset.crs
    if model_crs is not None and scene_crs is not None:

        def units(crs):
            return "degree" if crs.is_geographic else (crs.linear_units or "unknown")

        if units(model_crs) != units(scene_crs):
            feedback.warning(
                f"The model was trained on data in {units(model_crs)} but the "
                f"input is in {units(scene_crs)}; pixel sizes cannot be compared. "
                "Reproject the input (wetlandunet:alignpair) to the training CRS."
            )
            return
    if spec.pixel_size:
        try:
            model_res = float(np.mean(np.abs(np.asarray(spec.pixel_size, dtype=float))))
        except (TypeError, ValueError):
            return
        scene_res = float(np.mean(np.abs(dataset.res)))
        if model_res > 0 and scene_res > 0:
            ratio = scene_res / model_res
            if ratio > 2 or ratio < 0.5:
                feedback.warning(
                    f"The input's pixel size ({scene_res:g}) is {ratio:.2g} times "
                    f"the training data's ({model_res:g}); the model sees features "
                    "at the wrong scale and may classify poorly. Resample the input "
                    "(wetlandunet:alignpair PIXEL_SIZE) to the training pixel size."
                )


#: A scene band whose mean lies this many training standard deviations from the training
#: mean is named in a warning.
SHIFT_WARNING = 3.0
#: Longest side of the decimated read used for the scene's statistics.
SHIFT_SAMPLE_SIDE = 512


def radiometric_shift(spec: ModelSpec, dataset, band_indexes: list, feedback: Feedback):
    """The largest per-band shift of the scene from the training data, in training spreads.

    For each band the model reads: |scene mean - training mean| / training standard
    deviation, the scene's mean over its valid pixels (nodata and GDAL masks left out) of a
    decimated read (at most ``SHIFT_SAMPLE_SIDE`` pixels a side). Bands beyond
    ``SHIFT_WARNING`` are named in a warning, as is a radiometry or product kind (the tags
    wetlandunet:preparescene writes) that differs from the training images'.

    Returns:
        The largest shift (rounded to 3 decimals), or None when the model has no mean and
        standard deviation or the scene no valid pixel.
    """
    _warn_radiometry(spec, dataset, feedback)
    mean, std = spec.normalization.get("mean"), spec.normalization.get("std")
    if not mean or not std or len(mean) != len(band_indexes):
        return None
    from rasterio.enums import Resampling

    step = max(1.0, max(dataset.width, dataset.height) / SHIFT_SAMPLE_SIDE)
    shape = (max(1, int(dataset.height / step)), max(1, int(dataset.width / step)))
    block = dataset.read(
        band_indexes, out_shape=(len(band_indexes), *shape), resampling=Resampling.nearest
    )
    valid = valid_pixels(block, [dataset.nodatavals[b - 1] for b in band_indexes])
    valid &= dataset.read_masks(band_indexes[0], out_shape=shape) > 0
    if not valid.any():
        return None
    scene = block[:, valid].astype(np.float64).mean(axis=1)
    spread = np.maximum(np.asarray(std, dtype=np.float64), 1e-12)
    shifts = np.abs(scene - np.asarray(mean, dtype=np.float64)) / spread
    names = spec.band_names or [f"band {b}" for b in band_indexes]
    far = [
        f"{names[i]} (scene mean {scene[i]:.4g}, training {mean[i]:.4g} +- {std[i]:.4g}: "
        f"{shifts[i]:.1f} spreads)"
        for i in np.argsort(-shifts)
        if shifts[i] > SHIFT_WARNING
    ]
    if far:
        feedback.warning(
            "The scene is far from the training data's radiometry: " + "; ".join(far) + ". "
            "The map may be wrong; prepare scenes and training images alike "
            "(wetlandunet:preparescene with the same RADIOMETRY)."
        )
    return round(float(shifts.max()), 3)


def _warn_radiometry(spec: ModelSpec, dataset, feedback: Feedback) -> None:
    """Warn when the scene's radiometry or product kind tag differs from the training's."""
    tags = dataset.tags()
    for key, label in (("radiometry", "radiometry"), ("product_kind", "product kind")):
        trained = (spec.radiometry or {}).get(key)
        scene = tags.get(key.upper())
        if trained and scene and trained != scene:
            feedback.warning(
                f"The model was trained on {label} '{trained}' but the scene is '{scene}': "
                "prepare it like the training images (wetlandunet:preparescene)."
            )
