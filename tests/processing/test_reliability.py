"""Bad input, cancel, crashes and killed processes: clear errors and nothing half-written.

Each test goes through processing.run (or a separate process that does), the way
a model, a batch or a script runs the algorithms.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from tests.core.synthetic import make_scene
from tests.processing.conftest import NAMES, TINY
from tests.rasters import write_raster
from wetland_unet_plugin.core.modelfile import read_metadata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.usefixtures("provider")


def leftovers(folder):
    """Temporary (partial) outputs left in a folder."""
    return [name for name in os.listdir(folder) if ".partial-" in name]


class CancelAt(QgsProcessingFeedback):
    """A feedback whose user presses Cancel once progress passes a threshold (percent),
    or once a log line contains a given text."""

    def __init__(self, percent=101, action=None, on_text=None):
        super().__init__()
        self.percent = percent
        self.action = action
        self.on_text = on_text
        self.fired = False
        self.max_progress = 0.0

    def _fire(self):
        if not self.fired:
            self.fired = True
            (self.action or self.cancel)()

    def setProgress(self, progress):
        super().setProgress(progress)
        self.max_progress = max(self.max_progress, progress)
        if progress >= self.percent:
            self._fire()

    def pushInfo(self, text):
        super().pushInfo(text)
        if self.on_text and self.on_text in text:
            self._fire()


@pytest.fixture(scope="module")
def big_scene(tmp_path_factory):
    """A scene big enough for hundreds of 64 px tiles."""
    path = str(tmp_path_factory.mktemp("big") / "big.tif")
    make_scene(path, 1024, 768, seed=11)
    return path


def predict_params(model, scene, output, **extra):
    return dict(
        {
            "MODEL": model,
            "INPUT": scene,
            "OUTPUT": output,
            "TILE_SIZE": 64,
            "OVERLAP": 8,
            "BATCH_SIZE": 1,
        },
        **extra,
    )


@pytest.mark.slow
def test_cancel_prediction_leaves_nothing(trained, big_scene, tmp_path):
    """Cancel at 20 %: the result says canceled, no output or temporary file remains."""
    import processing

    output = str(tmp_path / "map.tif")
    probabilities = str(tmp_path / "prob.tif")
    feedback = CancelAt(20)
    with pytest.raises(QgsProcessingException, match="(?i)cancel"):
        processing.run(
            "wetlandunet:predict",
            predict_params(
                trained["OUTPUT_MODEL"], big_scene, output, OUTPUT_PROBABILITIES=probabilities
            ),
            feedback=feedback,
        )
    assert feedback.fired and feedback.max_progress < 60
    assert not os.path.exists(output) and not os.path.exists(probabilities)
    assert leftovers(tmp_path) == []


def test_cancel_training_without_keeping_leaves_no_model(scenes, tmp_path):
    """Cancel mid-training with KEEP_BEST_ON_CANCEL off: canceled, no model file."""
    import processing

    model = str(tmp_path / "m.keras")
    feedback = CancelAt(3)
    with pytest.raises(QgsProcessingException, match="(?i)cancel"):
        processing.run(
            "wetlandunet:train",
            dict(
                TINY,
                EPOCHS=40,
                TRAIN_SIZE=400,
                IMAGES=[scenes["pairs"][0][0]],
                MASKS=[scenes["pairs"][0][1]],
                CLASS_NAMES=NAMES,
                KEEP_BEST_ON_CANCEL=False,
                OUTPUT_MODEL=model,
            ),
            feedback=feedback,
        )
    assert not os.path.exists(model) and leftovers(tmp_path) == []


@pytest.mark.slow
def test_cancel_training_keeps_the_best_model_when_asked(scenes, tmp_path):
    """Cancel after the first epoch with KEEP_BEST_ON_CANCEL: a whole, loadable model."""
    import processing

    model = str(tmp_path / "m.keras")
    feedback = CancelAt(on_text="Epoch 2/")  # cancel during the third epoch
    result = processing.run(
        "wetlandunet:train",
        dict(
            TINY,
            EPOCHS=20,
            IMAGES=[scenes["pairs"][0][0]],
            MASKS=[scenes["pairs"][0][1]],
            CLASS_NAMES=NAMES,
            KEEP_BEST_ON_CANCEL=True,
            EARLY_STOPPING=0,
            OUTPUT_MODEL=model,
        ),
        feedback=feedback,
    )
    assert result["OUTPUT_MODEL"] == model and result["CANCELED"] is True
    meta = read_metadata(model)
    assert meta["canceled"] is True
    assert 2 <= meta["epochs_run"] <= 3
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_worker_killed_mid_prediction_is_reported_and_the_next_job_works(
    trained, big_scene, tmp_path
):
    """SIGKILL of the worker at 20 %: a QgsProcessingException naming it; next job runs."""
    import processing

    from wetland_unet_plugin.processing.settings import worker_python
    from wetland_unet_plugin.processing.worker_client import get_client

    client = get_client(worker_python())
    output = str(tmp_path / "map.tif")
    feedback = CancelAt(20, action=lambda: os.kill(client.pid, signal.SIGKILL))
    with pytest.raises(QgsProcessingException, match="killed"):
        processing.run(
            "wetlandunet:predict",
            predict_params(trained["OUTPUT_MODEL"], big_scene, output),
            feedback=feedback,
        )
    assert not os.path.exists(output)
    time.sleep(0.5)
    assert leftovers(tmp_path) == []  # nothing completes later either
    result = processing.run(
        "wetlandunet:predict",
        {"MODEL": trained["OUTPUT_MODEL"], "INPUT": big_scene, "OUTPUT": output},
    )
    assert os.path.isfile(result["OUTPUT"])


KILL_SCRIPT = r"""
import os, sys
sys.path.insert(0, {root!r})
from wetland_unet_plugin.processing.headless import start_qgis
app, plugin = start_qgis()
import processing
from qgis.core import QgsProcessingFeedback
from wetland_unet_plugin.processing.settings import worker_python
from wetland_unet_plugin.processing.worker_client import get_client

class Report(QgsProcessingFeedback):
    def setProgress(self, p):
        super().setProgress(p)
        print("PROGRESS", p, get_client(worker_python()).pid, flush=True)

processing.run("wetlandunet:predict", {params!r}, feedback=Report())
print("FINISHED", flush=True)
"""


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is not running
        return handle.read().split()[2] != "Z"


@pytest.mark.slow
def test_killing_the_qgis_side_mid_prediction_leaves_nothing_then_or_later(
    trained, big_scene, tmp_path
):
    """SIGKILL the process that runs predict half way: the worker stops and cleans up."""
    output = str(tmp_path / "map.tif")
    script = tmp_path / "run.py"
    script.write_text(
        KILL_SCRIPT.format(
            root=ROOT,
            params=predict_params(
                trained["OUTPUT_MODEL"], big_scene, output, OUTPUT_MAP=str(tmp_path / "rgb.tif")
            ),
        )
    )
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=str(tmp_path),
    )
    worker = None
    for line in process.stdout:
        if line.startswith("PROGRESS"):
            _, progress, pid = line.split()
            worker = int(pid)
            if float(progress) >= 30:
                break
    assert worker is not None, "the prediction never reported progress"
    process.kill()
    process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker), "the worker outlived its parent"
    time.sleep(1.0)
    assert not os.path.exists(output) and not os.path.exists(str(tmp_path / "rgb.tif"))
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_two_qgis_processes_never_share_a_worker(trained):
    """Each process starts its own worker, a child of that process."""
    from wetland_unet_plugin.processing.settings import worker_python
    from wetland_unet_plugin.processing.worker_client import get_client

    client = get_client(worker_python())
    client.run("ping", {})
    mine = client.pid
    with open(f"/proc/{mine}/stat") as handle:
        assert int(handle.read().split()[3]) == os.getpid()
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from wetland_unet_plugin.processing.worker_client import WorkerClient\n"
        "c = WorkerClient(sys.executable); c.run('ping', {}); print(c.pid); c.stop()" % ROOT
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert int(other.stdout.split()[-1]) != mine


def test_output_equal_to_input_is_refused_and_the_input_kept(tmp_path):
    """cleaninvalid with OUTPUT = INPUT: error, and the input's bytes are unchanged."""
    import processing

    data = np.full((1, 8, 8), -1, dtype="int16")
    src = write_raster(tmp_path / "in.tif", data)
    before = open(src, "rb").read()
    with pytest.raises(QgsProcessingException, match="(?i)input"):
        processing.run("wetlandunet:cleaninvalid", {"INPUT": src, "OUTPUT": src})
    assert open(src, "rb").read() == before


def test_train_refuses_pairs_on_different_grids(scenes, tmp_path):
    """An image and a mask on different grids: the message points at alignpair."""
    import processing

    image = str(tmp_path / "shifted.tif")
    make_scene(image, 100, 100, seed=3)
    model = str(tmp_path / "m.keras")
    with pytest.raises(QgsProcessingException, match="alignpair"):
        processing.run(
            "wetlandunet:train",
            dict(
                TINY,
                IMAGES=[image],
                MASKS=[scenes["pairs"][0][1]],
                CLASS_NAMES=NAMES,
                OUTPUT_MODEL=model,
            ),
        )
    assert not os.path.exists(model)


def test_train_refuses_an_all_nodata_image(tmp_path):
    """An image whose every pixel is nodata cannot teach anything: clear error."""
    import processing

    image = write_raster(tmp_path / "empty.tif", np.zeros((4, 128, 128), "uint16"), nodata=0)
    mask = write_raster(tmp_path / "mask.tif", np.ones((128, 128), "uint8"), nodata=0)
    model = str(tmp_path / "m.keras")
    with pytest.raises(QgsProcessingException, match="(?i)nodata|no valid"):
        processing.run(
            "wetlandunet:train",
            dict(TINY, IMAGES=[image], MASKS=[mask], CLASS_NAMES=NAMES, OUTPUT_MODEL=model),
        )
    assert not os.path.exists(model)


def test_train_refuses_a_patch_size_the_depth_cannot_halve(scenes, tmp_path):
    """PATCH_SIZE 36 with DEPTH 3 (needs a multiple of 8)."""
    import processing

    model = str(tmp_path / "m.keras")
    with pytest.raises(QgsProcessingException, match="(?i)multiple"):
        processing.run(
            "wetlandunet:train",
            dict(
                TINY,
                PATCH_SIZE=36,
                DEPTH=3,
                IMAGES=[scenes["pairs"][0][0]],
                MASKS=[scenes["pairs"][0][1]],
                CLASS_NAMES=NAMES,
                OUTPUT_MODEL=model,
            ),
        )
    assert not os.path.exists(model)


def test_train_refuses_bands_out_of_range(scenes, tmp_path):
    """BANDS 1,2,9 on a 4-band image."""
    import processing

    model = str(tmp_path / "m.keras")
    with pytest.raises(QgsProcessingException, match="(?i)band"):
        processing.run(
            "wetlandunet:train",
            dict(
                TINY,
                BANDS="1,2,9",
                IMAGES=[scenes["pairs"][0][0]],
                MASKS=[scenes["pairs"][0][1]],
                CLASS_NAMES=NAMES,
                OUTPUT_MODEL=model,
            ),
        )
    assert not os.path.exists(model)


def test_train_refuses_unparseable_colours(scenes, tmp_path):
    """CLASS_COLORS that are not colours, before any training."""
    import processing

    model = str(tmp_path / "m.keras")
    with pytest.raises(QgsProcessingException, match="#rrggbb"):
        processing.run(
            "wetlandunet:train",
            dict(
                TINY,
                CLASS_COLORS="red,green,blue",
                IMAGES=[scenes["pairs"][0][0]],
                MASKS=[scenes["pairs"][0][1]],
                CLASS_NAMES=NAMES,
                OUTPUT_MODEL=model,
            ),
        )
    assert not os.path.exists(model)


def test_predict_refuses_a_tile_size_the_model_cannot_use(trained, scenes, tmp_path):
    """TILE_SIZE 50 for a depth-2 model (needs a multiple of 4)."""
    import processing

    output = str(tmp_path / "m.tif")
    with pytest.raises(QgsProcessingException, match="(?i)multiple"):
        processing.run(
            "wetlandunet:predict",
            {
                "MODEL": trained["OUTPUT_MODEL"],
                "INPUT": scenes["test"],
                "TILE_SIZE": 50,
                "OUTPUT": output,
            },
        )
    assert not os.path.exists(output)


def test_predict_refuses_an_unwritable_output_folder(trained, scenes, tmp_path):
    """An output in a folder that does not exist: error before the model runs."""
    import processing

    output = str(tmp_path / "missing" / "deeper" / "map.tif")
    with pytest.raises(QgsProcessingException, match="(?i)folder|directory|writ"):
        processing.run(
            "wetlandunet:predict",
            {"MODEL": trained["OUTPUT_MODEL"], "INPUT": scenes["test"], "OUTPUT": output},
        )
    assert not os.path.exists(output)


def test_predict_is_deterministic(trained, scenes, tmp_path):
    """The same model and scene give byte-identical class maps and probabilities."""
    import processing

    outputs = []
    for name in ("a", "b"):
        result = processing.run(
            "wetlandunet:predict",
            {
                "MODEL": trained["OUTPUT_MODEL"],
                "INPUT": scenes["test"],
                "TTA": 4,
                "OUTPUT": str(tmp_path / f"{name}.tif"),
                "OUTPUT_PROBABILITIES": str(tmp_path / f"{name}_p.tif"),
            },
        )
        with (
            rasterio.open(result["OUTPUT"]) as c,
            rasterio.open(result["OUTPUT_PROBABILITIES"]) as p,
        ):
            outputs.append((c.read(), p.read()))
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
    np.testing.assert_array_equal(outputs[0][1], outputs[1][1])
