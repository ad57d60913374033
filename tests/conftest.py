"""Shared fixtures: QGIS comes from pytest-qgis (headless); the provider is registered once."""

import os
import sys

import pytest

#: Fixtures that train a model: every test that uses one is slow (left out by make test-fast).
TRAINING_FIXTURES = {"trained"}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def provider(qgis_processing):
    """Register the Wetland U-Net provider the way QGIS and qgis_process do."""
    from qgis.core import QgsApplication

    import wetland_unet_plugin

    plugin = wetland_unet_plugin.classFactory(None)
    plugin.initProcessing()
    yield QgsApplication.processingRegistry().providerById("wetlandunet")
    plugin.unload()


def pytest_collection_modifyitems(items):
    """Mark the tests that need a trained model as slow."""
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
