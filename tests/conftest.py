"""Shared fixtures: QGIS comes from pytest-qgis (headless); the provider is registered once."""

import os
import sys

import pytest

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


# QGIS and TensorFlow in one process can crash during interpreter teardown after every
# test has run and the summary is printed (see the design). End such a session with
# its own exit status instead of the teardown lottery; pytest-qgis still closes QGIS
# (exitQgis) in its session fixture before this runs.
_STATUS = {"code": 0}


def pytest_sessionfinish(session, exitstatus):
    _STATUS["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if "tensorflow" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_STATUS["code"])
