"""QGIS Processing side: the provider and one thin module per algorithm."""
