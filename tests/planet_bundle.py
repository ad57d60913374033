"""Realistic Planet deliveries for tests: scenes, UDM2, metadata XML and JSON, named as Planet does.

    from tests.planet_bundle import write_bundle

A bundle is one PlanetScope item in a folder: the analytic scene (4 bands: blue,
green, red, nir; or 8 bands: coastal blue, blue, green I, green, yellow, red, red
edge, nir), uint16 with nodata 0 and a blackfill strip on its west edge; its UDM2
(clear, snow, shadow, light haze, heavy haze, cloud, confidence, bitmask) with a
cloud, a shadow and a light-haze rectangle; the metadata XML with one reflectance
coefficient per band; the item's JSON with its acquisition time. The land cover
is ``synthetic.make_class_map``'s: the 8-band scene of an item carries, in its
blue, green, red and nir bands, exactly the 4-band scene's values. ``write_rpc_scene``
and ``write_dem`` make a basic (1B) scene with RPCs over high ground and its DEM.
"""

from __future__ import annotations

import json
import os

import numpy as np
import rasterio
import rasterio.transform

from tests.core.synthetic import DEFAULT_TRANSFORM, make_class_map, make_image
from tests.rasters import write_raster

ITEM = "20240312_151234_12_24a3"
ACQUIRED = "2024-03-12T15:12:34.512Z"
#: Where the 4-band bands sit in an 8-band SuperDove scene (0-based).
EIGHT_BAND_POSITIONS = {"blue": 1, "green": 3, "red": 5, "nir": 7}
#: Rectangles (row slice, column slice) of the UDM2 classes, for a 96 x 80 scene or larger.
CLOUD = (slice(4, 20), slice(30, 60))
SHADOW = (slice(24, 34), slice(40, 64))
HAZE = (slice(60, 70), slice(10, 30))
BLACKFILL_COLUMNS = 4


def scene_name(item: str, n_bands: int, product: str) -> str:
    """Planet's file name of an analytic asset (product ``SR`` or ``TOA``)."""
    eight = "_8b" if n_bands == 8 else ""
    if product == "SR":
        return f"{item}_3B_AnalyticMS_SR{eight}{'_harmonized' if eight else ''}_clip.tif"
    return f"{item}_3B_AnalyticMS{eight}_clip.tif"


def coefficients(n_bands: int) -> list:
    """TOA reflectance coefficients per band (reflectance = DN x coefficient)."""
    return [2.0e-5 + 1.0e-6 * b for b in range(n_bands)]


def reflectance_x10000(class_map: np.ndarray, seed: int, n_bands: int) -> np.ndarray:
    """(n_bands, rows, cols) reflectance x 10000; 8 bands carry the 4-band values in place."""
    four = make_image(class_map, 4, seed)
    if n_bands == 4:
        return four
    blue, green, red, nir = four
    return np.stack(
        [0.8 * blue, blue, 0.95 * green, green, 0.5 * (green + red), red, 0.5 * (red + nir), nir]
    ).astype(np.float32)


def write_bundle(
    folder,
    item: str = ITEM,
    n_bands: int = 4,
    width: int = 96,
    height: int = 80,
    seed: int = 0,
    product: str = "SR",
    xml: bool = True,
    metadata_json: bool = True,
    udm2: bool = True,
) -> dict:
    """Write one item's delivery into ``folder``.

    Returns:
        paths (``scene``, ``udm2``, ``xml``, ``json``) and truths: ``class_map``,
        ``cloud``, ``shadow``, ``haze``, ``blackfill`` (boolean maps), ``reflectance``
        (bands x rows x cols, 0..1, what RADIOMETRY reflectance must give), ``dn`` (the
        scene's values).
    """
    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    class_map = make_class_map(width, height, seed)
    refl = reflectance_x10000(class_map, seed, n_bands)
    masks = {
        name: np.zeros((height, width), bool) for name in ("cloud", "shadow", "haze", "blackfill")
    }
    for name, rect in (("cloud", CLOUD), ("shadow", SHADOW), ("haze", HAZE)):
        masks[name][rect] = True
    masks["blackfill"][:, :BLACKFILL_COLUMNS] = True
    refl[:, masks["cloud"]] = 8000.0  # bright, flat clouds
    refl[:, masks["shadow"]] *= 0.4
    if product == "SR":
        dn = np.round(refl)
    else:  # radiance DN such that DN x coefficient is the reflectance
        coef = np.asarray(coefficients(n_bands))[:, None, None]
        dn = np.round(refl / 10000.0 / coef)
    dn = np.clip(dn, 1, 65535).astype(np.uint16)
    dn[:, masks["blackfill"]] = 0
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        crs="EPSG:32618",
        transform=DEFAULT_TRANSFORM,
    )
    paths = {"scene": os.path.join(folder, scene_name(item, n_bands, product))}
    with rasterio.open(
        paths["scene"], "w", count=n_bands, dtype="uint16", nodata=0, **profile
    ) as d:
        d.write(dn)
    if udm2:
        paths["udm2"] = os.path.join(folder, f"{item}_3B_udm2_clip.tif")
        write_udm2(paths["udm2"], masks, profile)
    if xml:
        eight = "_8b" if n_bands == 8 else ""
        paths["xml"] = os.path.join(folder, f"{item}_3B_AnalyticMS{eight}_metadata_clip.xml")
        write_xml(paths["xml"], item, coefficients(n_bands))
    if metadata_json:
        paths["json"] = os.path.join(folder, f"{item}_metadata.json")
        with open(paths["json"], "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "id": item,
                    "type": "Feature",
                    "properties": {
                        "acquired": ACQUIRED,
                        "item_type": "PSScene",
                        "cloud_percent": 9,
                    },
                },
                handle,
            )
    reflectance = dn.astype(np.float64) / 10000.0
    if product != "SR":
        reflectance = dn * np.asarray(coefficients(n_bands))[:, None, None]
    return dict(paths, class_map=class_map, reflectance=reflectance, dn=dn, **masks)


def write_udm2(path: str, masks: dict, profile: dict) -> str:
    """A UDM2: clear, snow, shadow, light haze, heavy haze, cloud, confidence, bitmask."""
    height, width = masks["cloud"].shape
    bands = np.zeros((8, height, width), np.uint8)
    bands[2] = masks["shadow"]
    bands[3] = masks["haze"]
    bands[5] = masks["cloud"]
    bands[7] = masks["blackfill"]  # bit 0: blackfill
    bands[0] = ~(masks["cloud"] | masks["shadow"] | masks["haze"] | masks["blackfill"])
    bands[6] = np.where(masks["blackfill"], 0, 80)
    with rasterio.open(path, "w", count=8, dtype="uint8", **profile) as dst:
        dst.write(bands)
    return path


def write_legacy_udm(path: str, masks: dict, profile_like: str) -> str:
    """A legacy 1-band UDM: bit 0 blackfill, bit 1 (cloud) where the UDM2 has cloud."""
    with rasterio.open(profile_like) as like:
        profile = dict(
            driver="GTiff",
            width=like.width,
            height=like.height,
            crs=like.crs,
            transform=like.transform,
        )
    value = masks["blackfill"].astype(np.uint8) | (masks["cloud"].astype(np.uint8) << 1)
    with rasterio.open(path, "w", count=1, dtype="uint8", **profile) as dst:
        dst.write(value[None])
    return path


def write_xml(path: str, item: str, coefs: list) -> str:
    """A PlanetScope analytic metadata XML with one reflectance coefficient per band."""
    bands = "".join(
        f"<ps:bandSpecificMetadata><ps:bandNumber>{b}</ps:bandNumber>"
        f"<ps:radiometricScaleFactor>0.01</ps:radiometricScaleFactor>"
        f"<ps:reflectanceCoefficient>{c!r}</ps:reflectanceCoefficient>"
        "</ps:bandSpecificMetadata>"
        for b, c in enumerate(coefs, start=1)
    )
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ps:EarthObservation xmlns:ps="http://schemas.planet.com/ps/v1/'
        'planet_product_metadata_geocorrected_level" '
        'xmlns:eop="http://earth.esa.int/eop" xmlns:gml="http://www.opengis.net/gml">'
        "<gml:using><eop:EarthObservationEquipment><eop:acquisitionParameters>"
        f"<ps:Acquisition><eop:acquisitionDate>{ACQUIRED}</eop:acquisitionDate></ps:Acquisition>"
        "</eop:acquisitionParameters></eop:EarthObservationEquipment></gml:using>"
        f"<gml:metaDataProperty><eop:EarthObservationMetaData><eop:identifier>{item}</eop:identifier>"
        "</eop:EarthObservationMetaData></gml:metaDataProperty>"
        f"<gml:resultOf><ps:EarthObservationResult>{bands}</ps:EarthObservationResult></gml:resultOf>"
        "</ps:EarthObservation>"
    )
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


# --- A basic (1B) scene: RPCs, no georeferencing -----------------------------------------

W, H = 120, 80
LON0, LAT0, SPAN_LON, SPAN_LAT = -74.10, 4.75, 0.012, 0.008  # Sabana de Bogota
HEIGHT_OFF, HEIGHT_SCALE, K = 2500.0, 500.0, 0.5  # samp = (L + K * Hn) * W/2 + W/2


def write_rpc_scene(tmp_path):
    """A basic (1B) scene without georeferencing whose RPCs put pixel (col, row) at lon
    LON0 + col / W * SPAN_LON, lat LAT0 - row / H * SPAN_LAT at 2,500 m, and move it by
    K * (h - 2500) / 500 * W/2 columns at height h.

    Returns:
        (scene path, a label raster in EPSG:4326 around it, the scene's values:
        row * 1000 + col + 1).
    """
    from rasterio.rpc import RPC

    rpcs = RPC(
        height_off=HEIGHT_OFF,
        height_scale=HEIGHT_SCALE,
        lat_off=LAT0 - SPAN_LAT / 2,
        lat_scale=SPAN_LAT / 2,
        long_off=LON0 + SPAN_LON / 2,
        long_scale=SPAN_LON / 2,
        line_off=H / 2,
        line_scale=H / 2,
        samp_off=W / 2,
        samp_scale=W / 2,
        line_num_coeff=[0, 0, -1] + [0] * 17,
        line_den_coeff=[1] + [0] * 19,
        samp_num_coeff=[0, 1, 0, K] + [0] * 16,  # terms 1, L, P, H, ...
        samp_den_coeff=[1] + [0] * 19,
        err_bias=None,
        err_rand=None,
    )
    rows, cols = np.mgrid[0:H, 0:W]
    data = (rows * 1000 + cols + 1).astype(np.int32)
    path = str(tmp_path / f"{ITEM}_1B_AnalyticMS.tif")
    with rasterio.open(path, "w", driver="GTiff", width=W, height=H, count=1, dtype="int32") as d:
        d.write(data[None])
        d.rpcs = rpcs
    mask = write_raster(
        tmp_path / "labels.tif",
        np.ones((100, 100), np.uint8),
        "EPSG:4326",
        rasterio.transform.from_origin(LON0 - 0.01, LAT0 + 0.01, 0.0004, 0.0004),
    )
    return path, mask, data


def write_dem(tmp_path, height, margin=0.05):
    """A constant-height DEM (EPSG:4326) covering the RPC scene with ``margin`` degrees."""
    return write_raster(
        tmp_path / "dem.tif",
        np.full((50, 50), height, np.float32),
        "EPSG:4326",
        rasterio.transform.from_origin(
            LON0 - margin, LAT0 + margin, (SPAN_LON + 2 * margin) / 50, (SPAN_LAT + 2 * margin) / 50
        ),
    )
