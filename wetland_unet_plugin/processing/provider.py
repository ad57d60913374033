"""The Wetland U-Net Processing provider (id ``wetlandunet``)."""

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .worker_client import default_python

WORKER_PYTHON_SETTING = "WETLANDUNET_WORKER_PYTHON"
PROVIDER_ID = "wetlandunet"
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resources_dir() -> str:
    """resources/ inside the installed plugin, or beside the package in a source checkout."""
    installed = os.path.join(_PACKAGE_DIR, "resources")
    return installed if os.path.isdir(installed) else os.path.join(
        os.path.dirname(_PACKAGE_DIR), "resources")


ICON_PATH = os.path.join(resources_dir(), "icons", "wetland_unet.svg")


def _processing_config():
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:  # Processing plugin not loaded (bare scripts)
        return None, None
    return ProcessingConfig, Setting


def worker_python() -> str:
    """The worker interpreter: the provider setting, else the default environment."""
    config, _ = _processing_config()
    value = None
    if config is not None:
        try:
            value = config.getSetting(WORKER_PYTHON_SETTING)
        except Exception:  # setting not registered yet
            value = None
    return value or default_python()


def shipped_models():
    """The modeler chains in resources/models (.model3), as algorithms of this provider."""
    from qgis.core import QgsProcessingModelAlgorithm

    folder = os.path.join(resources_dir(), "models")
    models = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".model3"):
            model = QgsProcessingModelAlgorithm()
            if model.fromFile(os.path.join(folder, name)):
                models.append(model)
    return models


def icon() -> QIcon:
    """The plugin's icon."""
    return QIcon(ICON_PATH)


class WetlandUNetProvider(QgsProcessingProvider):
    """Lists the algorithms and owns the worker-environment setting."""

    def id(self):
        return PROVIDER_ID

    def name(self):
        return "Wetland U-Net"

    def longName(self):  # noqa: N802
        return "Wetland U-Net: land-cover mapping with a TensorFlow U-Net"

    def icon(self):
        return icon()

    def load(self):
        config, setting = _processing_config()
        if config is not None:
            config.settingIcons[self.name()] = self.icon()
            config.addSetting(setting(
                self.name(), WORKER_PYTHON_SETTING,
                "Worker Python with TensorFlow (train and predict run there, outside QGIS)",
                default_python(), valuetype=setting.FILE))
            config.readSettings()
        self.refreshAlgorithms()
        # The shipped chains call this provider's algorithms, which resolve only once the
        # registry holds the provider: load them again when it does.
        from qgis.core import QgsApplication

        QgsApplication.processingRegistry().providerAdded.connect(self._on_provider_added)
        return True

    def _on_provider_added(self, provider_id):
        if provider_id == self.id():
            from qgis.core import QgsApplication

            QgsApplication.processingRegistry().providerAdded.disconnect(self._on_provider_added)
            self.refreshAlgorithms()

    def unload(self):
        config, _ = _processing_config()
        if config is not None:
            try:
                config.removeSetting(WORKER_PYTHON_SETTING)
            except Exception:  # already gone
                pass

    def loadAlgorithms(self):  # noqa: N802
        from .algorithms import all_algorithms

        for algorithm in all_algorithms():
            self.addAlgorithm(algorithm)
        for model in shipped_models():
            self.addAlgorithm(model)
