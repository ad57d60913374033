"""The model file: one Keras ``.keras`` zip that also carries the Wetland U-Net metadata.

The metadata lives in its own JSON entry inside the zip, so QGIS can read class
names, colours and bands without importing TensorFlow (``read_metadata``).
``load_model`` refuses files that could run code (Lambda layers, custom objects)
before Keras sees them, and loads with Keras safe mode on.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass

from .atomic import atomic_output
from .feedback import CoreError

METADATA_ENTRY = "wetland_unet.json"
FORMAT_NAME = "wetland-unet-model"
FORMAT_VERSION = 1
MODEL_EXTENSION = ".keras"

# Layer classes that can carry code or load code from elsewhere.
_FORBIDDEN_CLASSES = {"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"}


@dataclass
class LoadedModel:
    """A Keras model and the metadata saved with it."""

    keras_model: object
    metadata: dict
    path: str = ""


def _open_zip(path: str) -> zipfile.ZipFile:
    if not os.path.isfile(path):
        raise CoreError(
            f"Model file not found: {path}. Choose a .keras file written by wetlandunet:train."
        )
    if not zipfile.is_zipfile(path):
        raise CoreError(
            f"{path} is not a Wetland U-Net model file (not a .keras zip; "
            "it may be corrupt or truncated). Choose a model written by "
            "wetlandunet:train, or train one again."
        )
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise CoreError(
            f"{path} cannot be read as a model file ({err}); it may be "
            "corrupt. Train or copy the model again."
        ) from None


def read_metadata(path: str) -> dict:
    """Read the Wetland U-Net metadata of a model file without TensorFlow.

    Args:
        path: a ``.keras`` file written by ``save_model``.

    Returns:
        The metadata dict (class names, colours, bands, normalisation, ...).

    Raises:
        CoreError: when the file is missing, corrupt or not a Wetland U-Net model.
    """
    with _open_zip(path) as archive:
        try:
            raw = archive.read(METADATA_ENTRY)
        except KeyError:
            raise CoreError(
                f"{path} is a Keras file but not a Wetland U-Net model (it has no "
                f"{METADATA_ENTRY}): class names, bands and normalisation are "
                "unknown. Train the model with wetlandunet:train."
            ) from None
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise CoreError(f"{path} is corrupt ({err}). Train or copy the model again.") from None
    try:
        metadata = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise CoreError(f"The metadata in {path} is corrupt ({err}).") from None
    if metadata.get("format") != FORMAT_NAME:
        raise CoreError(
            f"{path} is not a Wetland U-Net model file (format {metadata.get('format')!r})."
        )
    if int(metadata.get("format_version", 0)) > FORMAT_VERSION:
        raise CoreError(
            f"{path} was written by a newer Wetland U-Net (model format "
            f"{metadata.get('format_version')}); update the plugin to use it."
        )
    return metadata


def _walk(obj):
    if isinstance(obj, dict):
        yield obj
        for value in obj.values():
            yield from _walk(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _walk(value)


def check_model_config(path: str) -> None:
    """Refuse a model whose Keras config could execute code when deserialised.

    Raises:
        CoreError: naming the offending layer, for Lambda layers, wrapped foreign
            models and any class not from Keras itself.
    """
    with _open_zip(path) as archive:
        try:
            config = json.loads(archive.read("config.json").decode("utf-8"))
        except KeyError:
            raise CoreError(
                f"{path} has no Keras model configuration; it is not a Keras 3 model file."
            ) from None
        except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as err:
            raise CoreError(f"{path} has a corrupt Keras configuration ({err}).") from None
    for node in _walk(config):
        class_name = node.get("class_name")
        if not isinstance(class_name, str):
            continue
        module = node.get("module")
        registered = node.get("registered_name")
        if class_name in _FORBIDDEN_CLASSES:
            raise CoreError(
                f"Refusing to load {path}: it contains a {class_name} layer, "
                "which can run arbitrary code. Wetland U-Net models never "
                "contain one; use a model trained by wetlandunet:train."
            )
        if (isinstance(module, str) and module and not module.startswith("keras")) or (
            isinstance(registered, str) and registered and "Custom>" in registered
        ):
            raise CoreError(
                f"Refusing to load {path}: it needs the custom object "
                f"'{registered or class_name}' from module '{module}', which "
                "would have to run code outside Keras. Use a model trained by "
                "wetlandunet:train."
            )


def save_model(keras_model, metadata: dict, path: str) -> str:
    """Write a Keras model and its metadata to one file, atomically.

    Args:
        keras_model: the Keras model.
        metadata: JSON-serialisable dict.
        path: destination ending in ``.keras``.

    Returns:
        The destination path.
    """
    if not path.lower().endswith(MODEL_EXTENSION):
        raise CoreError(
            f"Model files end in {MODEL_EXTENSION}: '{path}' does not. "
            f"Choose an output name like model{MODEL_EXTENSION}."
        )
    meta = dict(metadata)
    meta["format"] = FORMAT_NAME
    meta["format_version"] = FORMAT_VERSION
    text = json.dumps(meta, indent=1, default=_json_default)
    with atomic_output(path) as tmp:
        keras_model.save(tmp)
        with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(METADATA_ENTRY, text)
    return path


def _json_default(obj):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def load_model(path: str) -> LoadedModel:
    """Load a model file safely: metadata checked, code-carrying layers refused.

    Args:
        path: a ``.keras`` file written by ``save_model``.

    Returns:
        ``LoadedModel`` with ``.keras_model`` (uncompiled) and ``.metadata``.

    Raises:
        CoreError: for missing, corrupt, foreign or unsafe files.
    """
    metadata = read_metadata(path)
    check_model_config(path)
    import keras  # imported here: reading metadata must not need TensorFlow

    source, tmpdir = path, None
    if not path.lower().endswith(MODEL_EXTENSION):
        tmpdir = tempfile.mkdtemp(prefix="wetland_unet_")
        source = os.path.join(tmpdir, "model" + MODEL_EXTENSION)
        shutil.copyfile(path, source)
    try:
        model = keras.saving.load_model(source, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many types for bad files
        raise CoreError(
            f"Keras could not load {path}: {err}. The file may be corrupt or "
            "from an incompatible Keras version; train the model again."
        ) from None
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return LoadedModel(keras_model=model, metadata=metadata, path=path)
