"""Planet scenes through processing.run: preparescene; prepare -> train -> predict by band name."""

import os

import numpy as np
import pytest
import rasterio
from qgis.core import (
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
)

from tests.planet_bundle import (
    ACQUIRED,
    HEIGHT_OFF,
    HEIGHT_SCALE,
    ITEM,
    LON0,
    SPAN_LON,
    K,
    W,
    write_bundle,
    write_dem,
    write_rpc_scene,
)
from tests.processing.conftest import NAMES, TINY
from wetland_unet_plugin.core.modelfile import read_metadata

pytestmark = pytest.mark.usefixtures("provider")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Log(QgsProcessingFeedback):
    """Keeps the warnings an algorithm pushes."""

    def __init__(self):
        super().__init__()
        self.warnings = []

    def pushWarning(self, text):
        self.warnings.append(text)
        super().pushWarning(text)


def _valid_values(path):
    """(n_valid_pixels, bands) values of a prepared scene's pixels that hold data."""
    with rasterio.open(path) as src:
        data = src.read().astype(np.float64)
        nodata = src.nodata
    valid = (data != nodata).all(axis=0)
    return data[:, valid].T


def _shift(path, normalization, bands):
    """Largest |scene mean - training mean| / training std over the model's bands."""
    mean = _valid_values(path)[:, bands].mean(axis=0)
    return float(np.max(np.abs(mean - normalization["mean"]) / np.asarray(normalization["std"])))


def _prepare(bundle, out, **params):
    import processing

    return processing.run(
        "wetlandunet:preparescene", dict({"INPUT": bundle["scene"], "OUTPUT": str(out)}, **params)
    )


def test_preparescene_typed_choices_and_outputs(tmp_path):
    """MASK_CLASSES typed as users type them; the UDM2 beside the scene is found by item id."""
    bundle = write_bundle(tmp_path / "delivery", n_bands=8)
    out = tmp_path / "prepared.tif"
    result = _prepare(bundle, out, MASK_CLASSES="cloud,light_haze", RADIOMETRY="as_is")
    masked = bundle["cloud"] | bundle["haze"]
    valid = ~(masked | bundle["blackfill"])
    assert result["MASKED_PIXELS"] == int((masked & ~bundle["blackfill"]).sum())
    assert result["VALID_PIXELS"] == int(valid.sum())
    assert result["ITEM_ID"] == ITEM and result["ACQUIRED"] == ACQUIRED
    assert result["OUTPUT"] == str(out)
    with rasterio.open(out) as dst:
        data = dst.read()
        assert dst.descriptions[0] == "coastal_blue" and dst.descriptions[7] == "nir"
    np.testing.assert_array_equal(data[0] != 0, valid)
    assert (data[:, bundle["shadow"] & valid] > 0).all()  # shadow not asked for: kept


def test_preparescene_refuses_a_udm_with_wrong_bands(tmp_path):
    bundle = write_bundle(tmp_path / "delivery")
    with rasterio.open(bundle["scene"]) as src:
        profile = dict(src.profile, count=2, dtype="uint8", nodata=None)
    udm = tmp_path / "udm.tif"
    with rasterio.open(udm, "w", **profile) as dst:
        dst.write(np.zeros((2, src.height, src.width), np.uint8))
    out = tmp_path / "prepared.tif"
    with pytest.raises(QgsProcessingException, match="has 2 bands"):
        _prepare(bundle, out, UDM=str(udm))
    assert not out.exists()


def test_preparescene_refuses_an_unknown_mask_class(tmp_path):
    bundle = write_bundle(tmp_path / "delivery")
    with pytest.raises(QgsProcessingException, match="cloud, shadow, heavy_haze"):
        _prepare(bundle, tmp_path / "p.tif", MASK_CLASSES="clouds")


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_alignpair_orthorectifies_a_1b_scene_alone_with_a_dem(tmp_path):
    """No MASK: the scene alone; a 2,600 m DEM gives the same map as GDAL told the height."""
    import processing

    scene, _, data = write_rpc_scene(tmp_path)
    dem = write_dem(tmp_path, 2600.0)
    params = {
        "IMAGE": scene,
        "RPC": True,
        "TARGET_CRS": "EPSG:4326",
        "PIXEL_SIZE": SPAN_LON / W / 2,
        "RESAMPLING": "nearest",
    }
    out = str(tmp_path / "ortho.tif")
    result = processing.run("wetlandunet:alignpair", dict(params, DEM=dem, OUTPUT_IMAGE=out))
    assert result["OUTPUT_IMAGE"] == out and not result.get("OUTPUT_MASK")
    with rasterio.open(out) as ds:
        row = ds.read(1)[ds.height // 2]
        lon = ds.transform.c + ds.transform.a * (np.arange(ds.width) + 0.5)
    # The scene column at each output pixel: K * (2600 - 2500) / 500 * W/2 = 6 further east
    # than at the RPCs' height offset (RPC sample 0 is the centre of the first pixel).
    shift = K * (2600.0 - HEIGHT_OFF) / HEIGHT_SCALE * W / 2
    fc = (lon - LON0) / SPAN_LON * W + 0.5 + shift
    sure = (fc > 0.3) & (fc < W - 0.3) & (np.abs(fc - np.round(fc)) > 0.15) & (row > 0)
    assert sure.sum() > 50
    assert np.mean((row[sure] - 1) % 1000 == fc[sure].astype(int)) > 0.95
    assert data.max() == (80 - 1) * 1000 + W


@pytest.mark.slow
def test_model_of_prepared_4band_scenes_maps_a_prepared_8band_scene(tmp_path):
    """Train on prepared 4-band items; the prepared 8-band scene of a third item gets the same
    classes as its 4-band scene on >= 95 % of valid pixels, and clouds/shadows are nodata."""
    import processing

    images, masks = [], []
    for seed in (1, 2):
        bundle = write_bundle(
            tmp_path / f"d{seed}",
            item=f"2024031{seed}_151234_12_24a3",
            width=160,
            height=128,
            seed=seed,
        )
        image = _prepare(bundle, tmp_path / f"train{seed}.tif")["OUTPUT"]
        mask = str(tmp_path / f"mask{seed}.tif")
        with rasterio.open(image) as src:
            profile = dict(src.profile, count=1, dtype="uint8", nodata=0)
        with rasterio.open(mask, "w", **profile) as dst:
            dst.write(bundle["class_map"][None])
        images.append(image)
        masks.append(mask)
    model = str(tmp_path / "model.keras")
    processing.run(
        "wetlandunet:train",
        dict(
            TINY,
            IMAGES=images,
            MASKS=masks,
            CLASS_NAMES=NAMES,
            BANDS="blue,green,red,nir",
            OUTPUT_MODEL=model,
            OUTPUT_REPORT=str(tmp_path / "report.html"),
        ),
    )
    meta = read_metadata(model)
    assert meta["band_names"] == ["blue", "green", "red", "nir"]
    assert meta["radiometry"] == {"radiometry": "as_is", "product_kind": "surface_reflectance"}
    # Clouds, shadows and blackfill never enter the normalisation: its mean is that of the
    # prepared images' valid pixels (small images: every valid pixel is sampled).
    valid = np.concatenate([_valid_values(image) for image in images])
    np.testing.assert_allclose(meta["normalization"]["mean"], valid.mean(axis=0), rtol=1e-6)
    maps, shifts = {}, {}
    for n_bands in (4, 8):
        bundle = write_bundle(
            tmp_path / f"t{n_bands}", n_bands=n_bands, width=120, height=96, seed=9
        )
        scene = _prepare(bundle, tmp_path / f"scene{n_bands}.tif")["OUTPUT"]
        out = str(tmp_path / f"map{n_bands}.tif")
        result = processing.run(
            "wetlandunet:predict", {"MODEL": model, "INPUT": scene, "OUTPUT": out}
        )
        with rasterio.open(out) as dst:
            maps[n_bands] = dst.read(1)
        bands = [0, 1, 2, 3] if n_bands == 4 else [1, 3, 5, 7]
        shifts[n_bands] = _shift(scene, meta["normalization"], bands)
        assert result["RADIOMETRIC_SHIFT"] == pytest.approx(shifts[n_bands], abs=1e-3)
        assert shifts[n_bands] < 3.0
    flagged = bundle["cloud"] | bundle["shadow"] | bundle["blackfill"]
    # The shipped modeler chain prepare -> predict gives the same map of the raw 8-band scene.
    chain = QgsProcessingModelAlgorithm()
    assert chain.fromFile(os.path.join(ROOT, "resources", "models", "prepare_and_map.model3"))
    chained = str(tmp_path / "chain.tif")
    result = processing.run(
        chain, {"scene": bundle["scene"], "model": model, "predict:Land-cover map": chained}
    )
    with rasterio.open(result["predict:Land-cover map"]) as dst:
        np.testing.assert_array_equal(dst.read(1), maps[8])
    for classes in maps.values():
        assert (classes[flagged] == 0).all()  # nodata where the UDM2 masked
        assert (classes[~flagged] > 0).all()
    same = float((maps[4] == maps[8])[~flagged].mean())
    assert same >= 0.95, same
    truth = float((maps[4] == bundle["class_map"])[~flagged].mean())
    assert truth > 0.6, truth  # the model learned something: agreement is not trivial
    # The raw 8-band scene has no band names: bands 1-4 (coastal blue .. green) by number.
    raw = str(tmp_path / "raw.tif")
    processing.run("wetlandunet:predict", {"MODEL": model, "INPUT": bundle["scene"], "OUTPUT": raw})
    with rasterio.open(raw) as dst:
        by_number = float((dst.read(1) == maps[4])[~flagged].mean())
    # A scene prepared as reflectance (0..1) lies far outside the as-is training data.
    scene = _prepare(bundle, tmp_path / "refl.tif", RADIOMETRY="reflectance")["OUTPUT"]
    log = Log()
    result = processing.run(
        "wetlandunet:predict",
        {"MODEL": model, "INPUT": scene, "OUTPUT": str(tmp_path / "refl_map.tif")},
        feedback=log,
    )
    expected = _shift(scene, meta["normalization"], [1, 3, 5, 7])
    assert result["RADIOMETRIC_SHIFT"] == pytest.approx(expected, abs=1e-3) and expected > 3
    warnings = " ".join(log.warnings)
    assert "far from the training data's radiometry: green (scene mean" in warnings
    assert "trained on radiometry 'as_is' but the scene is 'reflectance'" in warnings
    with pytest.raises(QgsProcessingException, match="RPC coefficients but no georeferencing"):
        processing.run(
            "wetlandunet:predict",
            {
                "MODEL": model,
                "INPUT": write_rpc_scene(tmp_path)[0],
                "OUTPUT": str(tmp_path / "1b.tif"),
            },
        )
    print(
        f"same classes 4/8-band {same:.4f}, 4-band vs truth {truth:.4f}, by number "
        f"{by_number:.4f}; shifts {shifts}, reflectance scene {expected:.1f}"
    )
    assert by_number < same - 0.1, (by_number, same)


@pytest.mark.slow
def test_preparescene_from_qgis_process(tmp_path):
    """A user's qgis_process (plugin deployed into a fresh HOME) prepares an 8-band delivery."""
    import subprocess
    import sys

    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_RUNTIME_DIR": str(home),
    }
    script = os.path.join(ROOT, "scripts", "package.py")
    deploy = [sys.executable, script, "deploy", "--python", sys.executable]
    subprocess.run(deploy, env=env, cwd=ROOT, check=True, capture_output=True, timeout=120)
    bundle = write_bundle(tmp_path / "delivery", n_bands=8)
    out = tmp_path / "prepared.tif"
    run = subprocess.run(
        [
            "/usr/bin/qgis_process.bin",
            "run",
            "wetlandunet:preparescene",
            "--",
            f"INPUT={bundle['scene']}",
            "MASK_CLASSES=cloud,shadow",
            f"OUTPUT={out}",
        ],
        env=env,
        cwd=str(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    results = dict(line.split(":\t", 1) for line in run.stdout.splitlines() if ":\t" in line)
    masked = (bundle["cloud"] | bundle["shadow"]) & ~bundle["blackfill"]
    assert int(float(results["MASKED_PIXELS"])) == int(masked.sum())
    assert results["ITEM_ID"] == ITEM
    with rasterio.open(out) as dst:
        assert dst.descriptions[7] == "nir"
