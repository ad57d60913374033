"""Run the Wetland U-Net algorithms from a plain Python script, without QGIS desktop.

    from wetland_unet_plugin.processing.headless import start_qgis
    app, plugin = start_qgis()
    import processing
    processing.run("wetlandunet:cleaninvalid", {...})
    stop_qgis(app, plugin)

(TensorFlow still runs in the worker process, never in this one.)
"""

import os
import sys


def start_qgis():
    """Start a headless QgsApplication with Processing and the Wetland U-Net provider.

    Returns:
        (app, plugin): keep both referenced while algorithms run.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    plugins = os.path.join(app.pkgDataPath(), "python", "plugins")
    if plugins not in sys.path:
        sys.path.append(plugins)
    from processing.core.Processing import Processing

    Processing.initialize()
    from .. import classFactory

    plugin = classFactory(None)
    plugin.initProcessing()
    return app, plugin


def stop_qgis(app, plugin):
    """Unload the plugin (stops the worker) and exit QGIS cleanly."""
    from qgis.core import QgsProject

    plugin.unload()
    QgsProject.instance().clear()
    app.exitQgis()
