"""Planet scenes as delivered: naming, UDM2/legacy UDM masking, radiometry, bands by name."""

import hashlib

import numpy as np
import pytest
import rasterio
import rasterio.transform
from scipy.ndimage import distance_transform_edt

from tests.planet_bundle import ACQUIRED, ITEM, write_bundle, write_legacy_udm
from wetland_unet_plugin.core.feedback import CoreError, Feedback
from wetland_unet_plugin.core.inference.spec import ModelSpec, check_bands
from wetland_unet_plugin.core.planet import naming
from wetland_unet_plugin.core.planet.prepare import REFLECTANCE_NODATA, prepare_scene
from wetland_unet_plugin.core.training.pairs import select_bands

EIGHT = ["coastal_blue", "blue", "green_i", "green", "yellow", "red", "red_edge", "nir"]


class Recorder(Feedback):
    def __init__(self):
        self.infos, self.warnings = [], []

    def info(self, text):
        self.infos.append(text)

    def warning(self, text):
        self.warnings.append(text)


def digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.mark.parametrize(
    "name, item, level, kind",
    [
        (f"{ITEM}_3B_AnalyticMS_SR_8b_harmonized_clip.tif", ITEM, "3B", "surface_reflectance"),
        (
            "20170623_180038_0f34_3B_AnalyticMS_SR.tif",
            "20170623_180038_0f34",
            "3B",
            "surface_reflectance",
        ),
        (f"{ITEM}_1B_AnalyticMS.tif", ITEM, "1B", "toa_radiance"),
        ("stack.tif", None, None, "unknown"),
    ],
)
def test_planet_names(name, item, level, kind):
    assert naming.item_id(name) == item
    assert naming.level(name) == level
    assert naming.product_kind(name) == kind


def test_prepare_masks_udm2_classes_names_bands_and_reads_metadata(tmp_path):
    """Default MASK_CLASSES: cloud and shadow become nodata, light haze stays, so does blackfill."""
    bundle = write_bundle(tmp_path / "item", n_bands=8)
    before = digest(bundle["scene"]), digest(bundle["udm2"])
    feedback = Recorder()
    out = str(tmp_path / "prepared.tif")
    result = prepare_scene(bundle["scene"], out, feedback=feedback)
    masked = (bundle["cloud"] | bundle["shadow"]) & ~bundle["blackfill"]
    keep = ~(bundle["cloud"] | bundle["shadow"] | bundle["blackfill"])
    assert result["masked_pixels"] == int(masked.sum()) > 0
    assert result["valid_pixels"] == int(keep.sum())
    assert result["item_id"] == ITEM and result["acquired"] == ACQUIRED
    assert result["udm"] == bundle["udm2"]
    assert any(bundle["udm2"] in line for line in feedback.infos)
    with rasterio.open(out) as dst:
        data = dst.read()
        assert list(dst.descriptions) == EIGHT
        assert dst.nodata == 0
    assert (data[:, ~keep] == 0).all()
    np.testing.assert_array_equal(data[:, keep], bundle["dn"][:, keep])
    assert (bundle["haze"] & keep).any()  # light haze is not masked by default
    assert (digest(bundle["scene"]), digest(bundle["udm2"])) == before


def test_mask_classes_and_buffer(tmp_path):
    """MASK_CLASSES cloud only, grown by MASK_BUFFER 2 (a disk: distance <= 2 pixels)."""
    bundle = write_bundle(tmp_path / "item")
    out = str(tmp_path / "prepared.tif")
    result = prepare_scene(bundle["scene"], out, mask_classes="cloud", mask_buffer=2)
    flagged = bundle["cloud"] | bundle["blackfill"]
    grown = distance_transform_edt(~flagged) <= 2.0
    expected = grown & ~bundle["blackfill"]
    assert result["masked_pixels"] == int(expected.sum())
    with rasterio.open(out) as dst:
        band = dst.read(1)
    np.testing.assert_array_equal(band == 0, grown)
    assert (band[bundle["shadow"] & ~grown] > 0).all()


def test_legacy_udm_masks_every_flagged_pixel(tmp_path):
    bundle = write_bundle(tmp_path / "item", udm2=False)
    legacy = write_legacy_udm(
        str(tmp_path / "item" / f"{ITEM}_3B_AnalyticMS_DN_udm_clip.tif"), bundle, bundle["scene"]
    )
    out = str(tmp_path / "prepared.tif")
    result = prepare_scene(bundle["scene"], out)
    assert result["udm"] == legacy
    with rasterio.open(out) as dst:
        band = dst.read(1)
    np.testing.assert_array_equal(band == 0, bundle["cloud"] | bundle["blackfill"])


@pytest.mark.parametrize("product", ["SR", "TOA"])
def test_reflectance(tmp_path, product):
    """SR / 10000; TOA radiance x the XML's coefficient of each band."""
    bundle = write_bundle(tmp_path / "item", product=product)
    out = str(tmp_path / "prepared.tif")
    prepare_scene(bundle["scene"], out, radiometry="reflectance")
    keep = ~(bundle["cloud"] | bundle["shadow"] | bundle["blackfill"])
    with rasterio.open(out) as dst:
        data = dst.read()
        assert dst.nodata == REFLECTANCE_NODATA and dst.dtypes[0] == "float32"
        assert dst.tags()["RADIOMETRY"] == "reflectance"
    np.testing.assert_allclose(data[:, keep], bundle["reflectance"][:, keep], rtol=1e-6)
    assert (data[:, ~keep] == REFLECTANCE_NODATA).all()
    assert 0.0 < data[:, keep].min() and data[:, keep].max() < 1.0


def _udm_like(path, scene, count, width_change=0):
    with rasterio.open(scene) as like:
        profile = dict(
            driver="GTiff",
            width=like.width + width_change,
            height=like.height,
            crs=like.crs,
            transform=like.transform,
            count=count,
            dtype="uint8",
        )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.zeros((count, profile["height"], profile["width"]), np.uint8))
    return path


@pytest.mark.parametrize(
    "case, match",
    [
        ("udm other grid", "not on the scene's grid"),
        ("udm 3 bands", "has 3 bands.*UDM2"),
        ("toa without xml", "metadata XML.*not beside it"),
        ("unknown product", "scaling is unknown"),
    ],
)
def test_bad_input_fails_before_writing(tmp_path, case, match):
    bundle = write_bundle(tmp_path / "item", product="TOA", xml=case != "toa without xml")
    params = {}
    if case == "udm other grid":
        params["udm"] = _udm_like(str(tmp_path / "u.tif"), bundle["scene"], 8, width_change=3)
    elif case == "udm 3 bands":
        params["udm"] = _udm_like(str(tmp_path / "u.tif"), bundle["scene"], 3)
    else:
        params["radiometry"] = "reflectance"
    scene = bundle["scene"]
    if case == "unknown product":
        scene = str(tmp_path / "stack.tif")
        with open(bundle["scene"], "rb") as a, open(scene, "wb") as b:
            b.write(a.read())
    out = tmp_path / "prepared.tif"
    with pytest.raises(CoreError, match=match):
        prepare_scene(scene, str(out), **params)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if "prepared" in p.name] == []


def test_select_bands_by_name_and_number():
    names = [n.upper() for n in EIGHT]  # names compare without case
    assert select_bands("blue,green,red,nir", 8, "s.tif", names) == [2, 4, 6, 8]
    assert select_bands("1,2,3", 8, "s.tif", names) == [1, 2, 3]
    with pytest.raises(CoreError, match="names swir.*1 COASTAL_BLUE"):
        select_bands("blue,swir", 8, "s.tif", names)
    with pytest.raises(CoreError, match="names blue.*none"):
        select_bands("blue", 4, "s.tif", [None] * 4)


def _spec(bands, names):
    return ModelSpec(
        class_names=["a", "b"],
        class_colors=["#000000", "#ffffff"],
        n_classes=2,
        bands=bands,
        n_channels=len(bands),
        depth=2,
        patch_size=32,
        normalization={"low": [0.0] * len(bands), "high": [1.0] * len(bands)},
        pixel_size=None,
        crs_wkt=None,
        band_names=names,
    )


def _raster(path, names):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=len(names),
        dtype="uint8",
        crs="EPSG:32618",
        transform=rasterio.transform.from_origin(0, 0, 1, 1),
    ) as dst:
        for i, name in enumerate(names, start=1):
            if name:
                dst.set_band_description(i, name)
    return rasterio.open(path)


def test_check_bands_by_name(tmp_path):
    """A 4-band model reads blue, green, red and nir of an 8-band scene: bands 2, 4, 6, 8."""
    four = _spec([1, 2, 3, 4], ["blue", "green", "red", "nir"])
    feedback = Recorder()
    with _raster(str(tmp_path / "e.tif"), EIGHT) as scene:
        assert check_bands(four, scene, "e.tif", feedback) == [2, 4, 6, 8]
    assert "blue = band 2" in " ".join(feedback.infos)
    eight = _spec(list(range(1, 9)), EIGHT)
    with _raster(str(tmp_path / "f.tif"), ["blue", "green", "red", "nir"]) as scene:
        with pytest.raises(
            CoreError, match="no band named coastal_blue, green_i, yellow, red_edge"
        ):
            check_bands(eight, scene, "f.tif")


def test_check_bands_falls_back_to_numbers(tmp_path):
    feedback = Recorder()
    named = _spec([1, 2, 3, 4], ["blue", "green", "red", "nir"])
    with _raster(str(tmp_path / "u.tif"), [None] * 8) as scene:
        assert check_bands(named, scene, "u.tif", feedback) == [1, 2, 3, 4]
        assert "no band names" in feedback.warnings[0]
        assert check_bands(_spec([1, 2, 3, 4], None), scene, "u.tif") == [1, 2, 3, 4]
