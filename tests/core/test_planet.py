"""Planet scenes as delivered: naming, UDM2/legacy UDM masking, radiometry, bands by name."""

import hashlib

import numpy as np
import pytest
import rasterio
import rasterio.transform
from scipy.ndimage import distance_transform_edt

from tests.planet_bundle import (
    ACQUIRED,
    HEIGHT_OFF,
    HEIGHT_SCALE,
    ITEM,
    LAT0,
    LON0,
    SPAN_LAT,
    SPAN_LON,
    H,
    K,
    W,
    write_bundle,
    write_dem,
    write_legacy_udm,
    write_rpc_scene,
)
from tests.rasters import write_raster
from wetland_unet_plugin.core.alignment import align_pair
from wetland_unet_plugin.core.feedback import CoreError, Feedback
from wetland_unet_plugin.core.inference.spec import ModelSpec, check_bands, warn_grid
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


# --- 1B scenes: RPC orthorectification with a DEM ---------------------------------------


def _placed(out_img, shift_cols):
    """Share of safely interior output pixels holding the scene pixel the RPCs put there."""
    with rasterio.open(out_img) as ds:
        got = ds.read(1)
        cols, rows = np.meshgrid(np.arange(ds.width) + 0.5, np.arange(ds.height) + 0.5)
        lon = ds.transform.c + ds.transform.a * cols
        lat = ds.transform.f + ds.transform.e * rows
    fc = (lon - LON0) / SPAN_LON * W + 0.5 + shift_cols
    fr = (LAT0 - lat) / SPAN_LAT * H + 0.5
    sure = (fc > 0.3) & (fc < W - 0.3) & (fr > 0.3) & (fr < H - 0.3)
    sure &= (np.abs(fc - np.round(fc)) > 0.15) & (np.abs(fr - np.round(fr)) > 0.15)
    assert sure.sum() > 500
    data = (fr.astype(int) * 1000 + fc.astype(int) + 1)[sure]
    return float(np.mean(got[sure] == data))


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_alignpair_rpc_uses_the_dem_or_the_height_offset(tmp_path):
    """A 2,600 m DEM moves pixels by K * 0.2 * W/2 = 6 columns; without a DEM the RPCs'
    height offset (2,500 m, no shift) is used, not 0 m, and the log gives the shift per 100 m."""
    scene, mask, _ = write_rpc_scene(tmp_path)
    common = dict(
        mask=mask,
        rpc=True,
        target_crs="EPSG:4326",
        pixel_size=SPAN_LON / W / 2,
        resampling="nearest",
    )
    out = str(tmp_path / "dem_img.tif")
    align_pair(scene, out, str(tmp_path / "dem_m.tif"), dem=write_dem(tmp_path, 2600.0), **common)
    shift = K * (2600.0 - HEIGHT_OFF) / HEIGHT_SCALE * W / 2
    assert shift == 6.0
    assert _placed(out, shift) > 0.99
    feedback = Recorder()
    out = str(tmp_path / "flat_img.tif")
    align_pair(scene, out, str(tmp_path / "flat_m.tif"), feedback=feedback, **common)
    assert _placed(out, 0.0) > 0.99
    per_100m = K * 100 / HEIGHT_SCALE * W / 2 * SPAN_LON / W * 111_320 * np.cos(np.radians(LAT0))
    message = " ".join(feedback.warnings)
    assert "2500 m" in message and f"about {per_100m:.1f} m" in message


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_alignpair_refuses_a_dem_that_does_not_cover_the_scene(tmp_path):
    scene, mask, _ = write_rpc_scene(tmp_path)
    dem = write_dem(tmp_path, 2600.0, margin=-0.003)  # smaller than the scene
    out = tmp_path / "img.tif"
    with pytest.raises(CoreError, match="give a DEM that covers the whole scene"):
        align_pair(scene, str(out), str(tmp_path / "m_out.tif"), mask=mask, rpc=True, dem=dem)
    assert not out.exists()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_alignpair_orthorectifies_a_scene_alone_and_predict_refuses_it_unrectified(tmp_path):
    """No MASK: the whole scene is orthorectified; the unrectified scene is refused by predict's
    grid check before any work."""
    scene, _, _ = write_rpc_scene(tmp_path)
    out = str(tmp_path / "ortho.tif")
    result = align_pair(
        scene,
        out,
        str(tmp_path / "unused.tif"),
        rpc=True,
        target_crs="EPSG:4326",
        pixel_size=SPAN_LON / W / 2,
        resampling="nearest",
    )
    assert result["output_mask"] is None and not (tmp_path / "unused.tif").exists()
    assert _placed(out, 0.0) > 0.99
    with rasterio.open(out) as ds:  # the whole scene: W x H pixels of half size, about
        assert abs(ds.width - 2 * W) <= 2 and abs(ds.height - 2 * H) <= 2
    spec = _spec([1], None)
    with rasterio.open(scene) as src, pytest.raises(CoreError, match="RPC coefficients but no"):
        warn_grid(spec, src, Recorder())
    with rasterio.open(out) as src:
        warn_grid(spec, src, Recorder())  # georeferenced: accepted


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_prepare_masks_a_1b_scene_on_its_grid_then_orthorectifies_it_with_the_dem(tmp_path):
    """The UDM2 of a 1B scene is on the raw grid: cloud pixels are masked there, then the scene
    is orthorectified with the DEM (6 columns east of the height offset's place)."""
    scene, _, data = write_rpc_scene(tmp_path)
    cloud = np.zeros((H, W), bool)
    cloud[10:30, 20:50] = True
    udm = np.zeros((8, H, W), np.uint8)
    udm[5], udm[0] = cloud, ~cloud
    with rasterio.open(
        tmp_path / f"{ITEM}_1B_udm2.tif",
        "w",
        driver="GTiff",
        width=W,
        height=H,
        count=8,
        dtype="uint8",
    ) as dst:
        dst.write(udm)
    out = str(tmp_path / "prepared.tif")
    result = prepare_scene(
        scene,
        out,
        dem=write_dem(tmp_path, 2600.0),
        target_crs="EPSG:4326",
        pixel_size=SPAN_LON / W / 2,
    )
    assert result["masked_pixels"] == int(cloud.sum())
    with rasterio.open(out) as ds:
        got = ds.read(1)
        assert ds.crs.to_epsg() == 4326 and ds.descriptions[0] is None  # 1 band: not renamed
        lon = ds.transform.c + ds.transform.a * (np.arange(ds.width) + 0.5)
        lat = ds.transform.f + ds.transform.e * (np.arange(ds.height) + 0.5)
    assert result["valid_pixels"] == int((got != 0).sum())
    assert not np.isin(got, data[cloud]).any()  # no cloud pixel survives the warp
    lon2, lat2 = np.meshgrid(lon, lat)
    fc = (lon2 - LON0) / SPAN_LON * W + 0.5 + 6.0
    fr = (LAT0 - lat2) / SPAN_LAT * H + 0.5
    sure = (fc > 0.3) & (fc < W - 0.3) & (fr > 0.3) & (fr < H - 0.3) & (got != 0)
    sure &= (np.abs(fc - np.round(fc)) > 0.15) & (np.abs(fr - np.round(fr)) > 0.15)
    assert sure.sum() > 1000
    expected = data[fr[sure].astype(int), fc[sure].astype(int)]
    assert np.mean(got[sure] == expected) > 0.99


def test_prepare_refuses_a_dem_for_a_scene_without_rpcs(tmp_path):
    bundle = write_bundle(tmp_path / "item")
    out = tmp_path / "prepared.tif"
    with pytest.raises(CoreError, match="has none: leave DEM empty"):
        prepare_scene(bundle["scene"], str(out), dem=bundle["scene"])
    assert not out.exists()


def test_normalisation_leaves_out_a_gdal_per_dataset_mask(tmp_path):
    """An image without nodata whose internal GDAL mask hides bright pixels: they never enter
    the normalisation statistics (the mean is that of the unmasked pixels)."""
    from wetland_unet_plugin.core.raster import has_mask_band
    from wetland_unet_plugin.core.training.pairs import check_pairs
    from wetland_unet_plugin.core.training.statistics import sample_normalization

    rng = np.random.default_rng(1)
    data = rng.uniform(100, 200, (4, 64, 64)).astype(np.float32)
    hidden = np.zeros((64, 64), bool)
    hidden[10:30, 5:40] = True
    data[:, hidden] = 1e6  # what a masked cloud might hold
    image = str(tmp_path / "masked.tif")
    profile = dict(
        driver="GTiff",
        width=64,
        height=64,
        count=4,
        dtype="float32",
        crs="EPSG:32618",
        transform=rasterio.transform.from_origin(0, 640, 10, 10),
    )
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(image, "w", **profile) as dst:
        dst.write(data)
        dst.write_mask(np.where(hidden, 0, 255).astype(np.uint8))
    mask = write_raster(
        tmp_path / "labels.tif",
        np.ones((64, 64), np.uint8),
        "EPSG:32618",
        rasterio.transform.from_origin(0, 640, 10, 10),
    )
    with rasterio.open(image) as src:
        assert src.nodata is None and has_mask_band(src)
    pairs, bands = check_pairs([image], [mask], 2)
    stats, invalid = sample_normalization(pairs, bands, np.random.default_rng(0))
    expected = data[:, ~hidden].astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(stats["mean"], expected, rtol=1e-6)
    assert invalid[0] == pytest.approx(hidden.mean())
