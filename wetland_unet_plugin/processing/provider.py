"""The Wetland U-Net Processing provider (id ``wetlandunet``)."""

import os

from qgis.core import QgsApplication, QgsProcessingModelAlgorithm, QgsProcessingProvider

from .algorithms import all_algorithms
from .settings import (
    PROVIDER_ID,
    WORKER_PYTHON_SETTING,
    default_python,
    icon,
    processing_config,
    resources_dir,
)


def shipped_models():
    """The modeler chains in resources/models (.model3), as algorithms of this provider."""
    folder = os.path.join(resources_dir(), "models")
    models = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".model3"):
            model = QgsProcessingModelAlgorithm()
            if model.fromFile(os.path.join(folder, name)):
                models.append(model)
    return models


class WetlandUNetProvider(QgsProcessingProvider):
    """Lists the algorithms and owns the worker-environment setting."""

    def id(self):
        return PROVIDER_ID

    def name(self):
        return "Wetland U-Net"

    def longName(self):
        return "Wetland U-Net: land-cover mapping with a TensorFlow U-Net"

    def icon(self):
        return icon()

    def load(self):
        config, setting = processing_config()
        if config is not None:
            config.settingIcons[self.name()] = self.icon()
            config.addSetting(
                setting(
                    self.name(),
                    WORKER_PYTHON_SETTING,
                    "Worker Python with TensorFlow (train and predict run there, outside QGIS; "
                    "build one with Wetland U-Net > Install or repair the TensorFlow worker)",
                    default_python(),
                    valuetype=setting.FILE,
                )
            )
            config.readSettings()
        self.refreshAlgorithms()
        # The shipped chains call this provider's algorithms, which resolve only once the
        # registry holds the provider: load them again when it does.
        QgsApplication.processingRegistry().providerAdded.connect(self._on_provider_added)
        return True

    def _on_provider_added(self, provider_id):
        if provider_id == self.id():
            QgsApplication.processingRegistry().providerAdded.disconnect(self._on_provider_added)
            self.refreshAlgorithms()

    def unload(self):
        config, _ = processing_config()
        if config is not None:
            try:
                config.removeSetting(WORKER_PYTHON_SETTING)
            except Exception:  # already gone
                pass

    def loadAlgorithms(self):
        for algorithm in all_algorithms():
            self.addAlgorithm(algorithm)
        for model in shipped_models():
            self.addAlgorithm(model)
