"""Registers the Processing provider; no logic of its own."""

from qgis.core import QgsApplication


class WetlandUNetPlugin:
    """The QGIS plugin: a Processing provider and nothing else."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):
        """Register the provider; qgis_process calls this without a GUI."""
        from .processing.provider import WetlandUNetProvider

        if self.provider is None:
            self.provider = WetlandUNetProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):
        """Desktop start: same as headless, the algorithms live in the Toolbox."""
        self.initProcessing()

    def unload(self):
        """Remove the provider and stop the worker process."""
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        from .processing.worker_client import shutdown_client

        shutdown_client()
