"""Wetland U-Net: a QGIS Processing plugin that trains U-Nets and maps land cover."""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """QGIS entry point: return the plugin object."""
    from .plugin import WetlandUNetPlugin

    return WetlandUNetPlugin(iface)
