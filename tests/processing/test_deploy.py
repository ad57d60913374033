"""Where QGIS users work: the zip, `make deploy`, qgis_process, QGIS desktop, modeler chains.

qgis_process and QGIS desktop run as separate processes with a clean
environment (a fresh HOME whose QGIS profile got the deployed plugin, no
PYTHONPATH, no WETLAND_UNET_PYTHON): they must find the plugin and, through
the recorded worker Python, TensorFlow.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import rasterio

from tests.core.synthetic import make_scene, write_mask
from tests.processing.conftest import NAMES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QGIS_PROCESS = "/usr/bin/qgis_process.bin"

pytestmark = pytest.mark.usefixtures("provider")


def clean_env(home):
    """A user's environment: a HOME and a PATH, headless display; nothing of ours."""
    return {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_RUNTIME_DIR": str(home),
    }


@pytest.fixture(scope="module")
def deployed_home(tmp_path_factory):
    """A fresh HOME with the plugin deployed by scripts/package.py (what `make deploy` runs)."""
    home = tmp_path_factory.mktemp("home")
    env = dict(clean_env(home))
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "package.py"),
            "deploy",
            "--python",
            sys.executable,
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    plugin = home / ".local/share/QGIS/QGIS3/profiles/default/python/plugins/wetland_unet_plugin"
    assert (plugin / "metadata.txt").is_file()
    assert (plugin / "worker_python.txt").read_text().strip() == os.path.abspath(sys.executable)
    return home


def qgis_process(home, *args, timeout=300):
    """Run qgis_process.bin with the clean environment; returns the completed process."""
    return subprocess.run(
        [QGIS_PROCESS, *args],
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(home),
    )


@pytest.mark.slow
def test_zip_holds_the_plugin_and_nothing_else(tmp_path):
    """The zip QGIS installs: package, metadata.txt, resources; no tests, no caches."""
    out = str(tmp_path / "plugin.zip")
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "package.py"), "zip", "--output", out],
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    names = zipfile.ZipFile(out).namelist()
    assert all(n.startswith("wetland_unet_plugin/") for n in names)
    for required in (
        "wetland_unet_plugin/__init__.py",
        "wetland_unet_plugin/metadata.txt",
        "wetland_unet_plugin/plugin.py",
        "wetland_unet_plugin/core/worker.py",
        "wetland_unet_plugin/requirements-worker.txt",  # what setupworker installs
        "wetland_unet_plugin/processing/provider.py",
        "wetland_unet_plugin/resources/icons/wetland_unet.svg",
        "wetland_unet_plugin/resources/models/map_new_scene.model3",
    ):
        assert required in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/tests/" in n]
    metadata = zipfile.ZipFile(out).read("wetland_unet_plugin/metadata.txt").decode()
    assert metadata.startswith("[general]")
    assert "hasProcessingProvider=yes" in metadata and "supportsQt6=True" in metadata


@pytest.mark.slow
def test_qgis_process_lists_the_algorithms(deployed_home):
    """After deploy, plain qgis_process.bin list shows every algorithm and chain."""
    result = qgis_process(deployed_home, "list")
    assert result.returncode == 0, result.stderr[-2000:]
    for alg in (
        "alignpair",
        "cleaninvalid",
        "train",
        "predict",
        "evaluate",
        "styleclassified",
        "map_new_scene",
        "train_from_polygons",
    ):
        assert f"wetlandunet:{alg}" in result.stdout


@pytest.mark.slow
def test_qgis_process_runs_clean_train_and_predict(deployed_home, tmp_path):
    """Three separate qgis_process runs: clean (in QGIS), train and predict (worker)."""
    image = str(tmp_path / "scene.tif")
    classes = make_scene(image, 96, 96, seed=5)
    data = rasterio.open(image).read()
    data[:, :4, :4] = -1
    with rasterio.open(image, "r+") as ds:
        ds.write(data)
    mask = write_mask(str(tmp_path / "mask.tif"), classes, image)

    cleaned = str(tmp_path / "clean.tif")
    result = qgis_process(
        deployed_home,
        "run",
        "wetlandunet:cleaninvalid",
        "--json",
        "--",
        f"INPUT={image}",
        f"OUTPUT={cleaned}",
    )
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]
    assert json.loads(result.stdout)["results"]["INVALID_COUNT"] == 4 * 4 * 4

    model = str(tmp_path / "model.keras")
    result = qgis_process(
        deployed_home,
        "run",
        "wetlandunet:train",
        "--json",
        "--",
        f"IMAGES={cleaned}",
        f"MASKS={mask}",
        f"CLASS_NAMES={NAMES}",
        "EPOCHS=2",
        "PATCH_SIZE=32",
        "TRAIN_SIZE=32",
        "VAL_SIZE=8",
        "FILTERS=4",
        "DEPTH=2",
        "SEED=1",
        f"OUTPUT_MODEL={model}",
    )
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]
    assert os.path.isfile(model)

    output = str(tmp_path / "landcover.tif")
    # A choice is the value the user types: TTA=3 is refused naming the allowed values,
    # before any work; TTA=4 runs four transforms.
    refused = qgis_process(
        deployed_home,
        "run",
        "wetlandunet:predict",
        "--",
        f"MODEL={model}",
        f"INPUT={cleaned}",
        f"OUTPUT={output}",
        "TTA=3",
    )
    assert refused.returncode != 0
    assert "TTA must be one of 1, 2, 4, 8" in refused.stdout + refused.stderr
    assert not os.path.exists(output)
    result = qgis_process(
        deployed_home,
        "run",
        "wetlandunet:predict",
        "--",
        f"MODEL={model}",
        f"INPUT={cleaned}",
        f"OUTPUT={output}",
        "TTA=4",
    )
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]
    assert "TTA 4" in result.stdout, result.stdout[-1500:]
    with rasterio.open(output) as ds:
        predicted = ds.read(1)
    assert set(np.unique(predicted)) <= {0, 1, 2, 3}
    assert (predicted[:4, :4] == 0).all()  # invalid input pixels are nodata
    assert os.path.isfile(str(tmp_path / "landcover.qml"))


@pytest.mark.skipif(
    not shutil.which("xvfb-run") or not shutil.which("qgis"),
    reason="QGIS desktop or xvfb-run missing",
)
@pytest.mark.slow
def test_qgis_desktop_runs_predict_through_the_deployed_plugin(
    deployed_home, trained, scenes, tmp_path
):
    """Real QGIS desktop under Xvfb: the deployed plugin's predict runs and loads styled."""
    output = str(tmp_path / "desktop_map.tif")
    report = str(tmp_path / "desktop_result.json")
    script = tmp_path / "run_predict.py"
    script.write_text(f"""
import json, os, traceback
try:
    import processing
    from qgis.core import QgsProject, QgsApplication
    from qgis.core import QgsProcessingOutputLayerDefinition
    ids = [a.id() for a in QgsApplication.processingRegistry().algorithms()]
    result = processing.runAndLoadResults("wetlandunet:predict", {{
        "MODEL": {trained["OUTPUT_MODEL"]!r}, "INPUT": {scenes["test"]!r},
        "OUTPUT": {output!r}}})
    layers = [l for l in QgsProject.instance().mapLayers().values()]
    renderer = layers[0].renderer().type() if layers else None
    out = {{"ok": True, "has_predict": "wetlandunet:predict" in ids, "renderer": renderer,
           "layers": len(layers)}}
except Exception:
    out = {{"ok": False, "error": traceback.format_exc()}}
with open({report!r}, "w") as handle:
    json.dump(out, handle)
os._exit(0)
""")
    env = clean_env(deployed_home)
    env.pop("QT_QPA_PLATFORM")
    subprocess.run(
        ["xvfb-run", "-a", "qgis", "--noversioncheck", "--nologo", "--code", str(script)],
        env=env,
        capture_output=True,
        timeout=300,
        cwd=str(deployed_home),
    )
    result = json.loads(open(report).read())
    assert result["ok"], result.get("error")
    assert result["has_predict"]
    assert result["renderer"] == "paletted"
    with rasterio.open(output) as ds:
        assert (ds.read(1) == scenes["truth"]).mean() > 0.8


def test_modeler_chain_maps_a_new_scene(trained, scenes, tmp_path):
    """The shipped chain align + clean + predict runs headless from the provider."""
    import processing

    from tests.rasters import write_polygons

    with rasterio.open(scenes["test"]) as ds:
        b, crs = ds.bounds, ds.crs.to_epsg()
    corners = [(b.left, b.bottom), (b.right, b.bottom), (b.right, b.top), (b.left, b.top)]
    box = "POLYGON((" + ",".join(f"{x} {y}" for x, y in corners + corners[:1]) + "))"
    labels = write_polygons(
        tmp_path / "survey.gpkg", [(box, "forest")], "landcover", crs, field_type="str"
    )
    output = str(tmp_path / "chain_map.tif")
    result = processing.run(
        "wetlandunet:map_new_scene",
        {
            "scene": scenes["test"],
            "labels": labels,
            "class_field": "landcover",
            "class_names": NAMES,
            "model": trained["OUTPUT_MODEL"],
            "predict:Land-cover map": output,
            "align:Aligned labels": str(tmp_path / "labels.tif"),
        },
    )
    assert result["predict:Land-cover map"] == output
    with rasterio.open(output) as ds:
        assert (ds.read(1) == scenes["truth"]).mean() > 0.8
    with rasterio.open(str(tmp_path / "labels.tif")) as ds:
        assert set(np.unique(ds.read(1))) == {3}  # 'forest' is class 3 of NAMES
