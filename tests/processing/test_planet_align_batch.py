"""Planet scenes (issue 18): a prepared scene's clouds get no label in alignpair's mask."""

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingFeedback

from tests.planet_bundle import write_bundle
from tests.rasters import write_raster

pytestmark = pytest.mark.usefixtures("provider")


class Log(QgsProcessingFeedback):
    """Keeps the lines an algorithm logs."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def pushInfo(self, text):
        self.lines.append(text)
        super().pushInfo(text)


def test_alignpair_leaves_a_prepared_scenes_clouds_unlabelled(tmp_path):
    """preparescene makes cloud, shadow and blackfill nodata; a class raster over the whole
    scene keeps its labels everywhere else and loses them exactly there."""
    import processing

    bundle = write_bundle(tmp_path / "delivery")
    prepared = str(tmp_path / "prepared.tif")
    processing.run("wetlandunet:preparescene", {"INPUT": bundle["scene"], "OUTPUT": prepared})
    with rasterio.open(bundle["scene"]) as src:
        mask = write_raster(
            tmp_path / "classes.tif", bundle["class_map"], src.crs, src.transform, nodata=0
        )
    invalid = bundle["cloud"] | bundle["shadow"] | bundle["blackfill"]  # the default classes
    assert (bundle["class_map"] > 0).all() and invalid.sum() > 500
    log = Log()
    result = processing.run(
        "wetlandunet:alignpair",
        {
            "IMAGE": prepared,
            "MASK": mask,
            "OUTPUT_IMAGE": str(tmp_path / "image.tif"),
            "OUTPUT_MASK": str(tmp_path / "mask.tif"),
        },
        feedback=log,
    )
    with rasterio.open(result["OUTPUT_MASK"]) as ds:
        got = ds.read(1)
    np.testing.assert_array_equal(got, np.where(invalid, 0, bundle["class_map"]))
    assert int(invalid.sum()) == 480 + 240 + 320  # cloud, shadow, blackfill: no overlap
    dropped = "Labels dropped under invalid image pixels (nodata, masked, outside the image): 1,040"
    assert any(line.startswith(dropped) for line in log.lines), log.lines
