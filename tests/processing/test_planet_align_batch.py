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


def test_preparescene_in_the_batch_dialog(tmp_path, qgis_iface):
    """The Toolbox's real batch dialog, filled as a user fills it (a scene and an output
    per row; row 2 masks clouds only), run by its own runAlgorithm: both scenes prepared,
    nodata under each row's masked classes and the blackfill, data elsewhere."""
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from processing.tools import dataobjects
    from qgis.core import QgsApplication
    from qgis.PyQt.QtWidgets import QTextEdit

    bundles = [
        write_bundle(tmp_path / f"delivery{i}", item=f"2024031{i}_151234_12_24a3", seed=i)
        for i in range(2)
    ]
    outputs = [str(tmp_path / f"prepared{i}.tif") for i in range(2)]
    alg = QgsApplication.processingRegistry().createAlgorithmById("wetlandunet:preparescene")
    dialog = BatchAlgorithmDialog(alg)
    panel = dialog.mainWidget()
    panel.addRow()  # the dialog opens with one row
    assert panel.batchRowCount() == 2
    context = dataobjects.createContext()
    column = panel.parameter_to_column
    for row, bundle in enumerate(bundles):
        panel.wrappers[row][column["INPUT"]].setParameterValue(bundle["scene"], context)
        panel.tblParameters.cellWidget(row + 1, column["OUTPUT"]).setValue(outputs[row])
    panel.wrappers[1][column["MASK_CLASSES"]].setParameterValue(["cloud"], context)
    dialog.runAlgorithm()
    log = "\n".join(w.toPlainText() for w in dialog.findChildren(QTextEdit, "txtLog"))
    dialog.close()
    assert "Batch execution completed" in log and "failed" not in log, log
    masked = [
        bundles[0]["cloud"] | bundles[0]["shadow"] | bundles[0]["blackfill"],
        bundles[1]["cloud"] | bundles[1]["blackfill"],
    ]
    for output, bundle, nodata in zip(outputs, bundles, masked):
        with rasterio.open(output) as ds:
            data = ds.read()
            assert ds.nodata == 0
        np.testing.assert_array_equal((data == 0).all(axis=0), nodata)
        np.testing.assert_array_equal(data[:, ~nodata], bundle["dn"][:, ~nodata])
    assert (masked[0].sum(), masked[1].sum()) == (480 + 240 + 320, 480 + 320)
