"""Provider-wide settings and resources: a leaf module (imports nothing of processing/
but the worker client), so provider, algorithms and feedback can all import it."""

import os

from qgis.PyQt.QtGui import QIcon

from .worker_client import default_python, default_python_source

PROVIDER_ID = "wetlandunet"
WORKER_PYTHON_SETTING = "WETLANDUNET_WORKER_PYTHON"
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resources_dir() -> str:
    """resources/ inside the installed plugin, or beside the package in a source checkout."""
    installed = os.path.join(_PACKAGE_DIR, "resources")
    return (
        installed
        if os.path.isdir(installed)
        else os.path.join(os.path.dirname(_PACKAGE_DIR), "resources")
    )


ICON_PATH = os.path.join(resources_dir(), "icons", "wetland_unet.svg")


def icon() -> QIcon:
    """The plugin's icon."""
    return QIcon(ICON_PATH)


def processing_config():
    """(ProcessingConfig, Setting) of the Processing plugin, or (None, None) without it."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:  # Processing plugin not loaded (bare scripts)
        return None, None
    return ProcessingConfig, Setting


def worker_python() -> str:
    """The worker interpreter: the provider setting, else the default environment."""
    return worker_python_source()[0]


def worker_python_source() -> tuple:
    """(worker interpreter, how it was chosen): the provider setting, else the default."""
    config, _ = processing_config()
    value = None
    if config is not None:
        try:
            value = config.getSetting(WORKER_PYTHON_SETTING)
        except Exception:  # setting not registered yet
            value = None
    if value and value != default_python():
        return value, "the provider setting (Options > Processing > Providers > Wetland U-Net)"
    return default_python_source()


def record_worker_python(python: str) -> None:
    """Make ``python`` the worker interpreter (the provider setting, saved in the profile)."""
    config, _ = processing_config()
    if config is not None:
        config.setSettingValue(WORKER_PYTHON_SETTING, python)
