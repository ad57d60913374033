"""Planet scenes through processing.run: preparescene; prepare -> train -> predict by band name."""

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException

from tests.planet_bundle import ACQUIRED, ITEM, write_bundle
from tests.processing.conftest import NAMES, TINY

pytestmark = pytest.mark.usefixtures("provider")


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
    maps = {}
    for n_bands in (4, 8):
        bundle = write_bundle(
            tmp_path / f"t{n_bands}", n_bands=n_bands, width=120, height=96, seed=9
        )
        scene = _prepare(bundle, tmp_path / f"scene{n_bands}.tif")["OUTPUT"]
        out = str(tmp_path / f"map{n_bands}.tif")
        processing.run("wetlandunet:predict", {"MODEL": model, "INPUT": scene, "OUTPUT": out})
        with rasterio.open(out) as dst:
            maps[n_bands] = dst.read(1)
    flagged = bundle["cloud"] | bundle["shadow"] | bundle["blackfill"]
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
    print(
        f"same classes 4/8-band {same:.4f}, 4-band vs truth {truth:.4f}, by number {by_number:.4f}"
    )
    assert by_number < same - 0.1, (by_number, same)
