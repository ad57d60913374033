"""Synthetic scenes for core tests: small GeoTIFFs whose classes are learnable from spectra.

Import from tests (``tests/core`` is on ``sys.path`` under pytest):

    from synthetic import make_scene, write_mask

The class map is blobby (argmax of three smoothed random fields), and each
class has its own spectrum (means per band) times a smooth brightness field
(10 %) and pixel noise (8 %), so a tiny U-Net learns it in a few epochs.
"""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy.ndimage import gaussian_filter

#: Mean reflectance (x 10000) per class (rows: class 1..3) and band (columns: B, G, R, NIR,
#: then repeating with an offset for more bands).
CLASS_SPECTRA = np.array(
    [
        [600.0, 700.0, 500.0, 300.0],  # 1: water (dark, darkest in NIR)
        [500.0, 900.0, 700.0, 1800.0],  # 2: wetland (moderate NIR)
        [400.0, 800.0, 450.0, 3500.0],  # 3: forest (bright NIR, dark red)
    ]
)

#: Default grid: UTM, 3 m pixels (Planet-like).
DEFAULT_TRANSFORM = from_origin(500000.0, 4500000.0, 3.0, 3.0)


def class_spectra(n_bands: int) -> np.ndarray:
    """Return (3, n_bands) class mean spectra, extending the 4-band table for more bands."""
    cols = [CLASS_SPECTRA[:, b % 4] * (1.0 + 0.15 * (b // 4)) for b in range(n_bands)]
    return np.stack(cols, axis=1)


def make_class_map(width: int, height: int, seed: int = 0, scale: float = 4.0) -> np.ndarray:
    """Return a (height, width) uint8 map of classes 1..3 with blobby spatial structure.

    Args:
        width, height: size in pixels.
        seed: random seed.
        scale: smoothing sigma in pixels (bigger = bigger blobs).
    """
    rng = np.random.default_rng(seed)
    fields = np.stack(
        [
            gaussian_filter(rng.standard_normal((height, width)), scale, mode="wrap")
            for _ in range(3)
        ]
    )
    return (np.argmax(fields, axis=0) + 1).astype(np.uint8)


def make_image(
    class_map: np.ndarray, n_bands: int = 4, seed: int = 0, noise: float = 0.08
) -> np.ndarray:
    """Return (n_bands, rows, cols) float32 reflectances for a class map.

    Args:
        class_map: (rows, cols) class ids 1..3.
        n_bands: number of bands.
        seed: random seed.
        noise: relative pixel noise (standard deviation as a share of the class mean).
    """
    rng = np.random.default_rng(seed + 1000)
    means = class_spectra(n_bands)[class_map.astype(np.int64) - 1]  # rows, cols, bands
    rows, cols = class_map.shape
    field = gaussian_filter(rng.standard_normal((rows, cols)), 8, mode="wrap")
    brightness = 1.0 + 0.1 * field / max(float(field.std()), 1e-12)
    pixel_noise = 1.0 + noise * rng.standard_normal((rows, cols, n_bands))
    image = means * brightness[..., None] * pixel_noise
    return np.moveaxis(image, -1, 0).astype(np.float32)


def make_scene(
    path: str,
    width: int,
    height: int,
    n_bands: int = 4,
    seed: int = 0,
    crs: str = "EPSG:32618",
    transform=None,
    nodata=None,
    dtype: str = "float32",
) -> np.ndarray:
    """Write a synthetic multiband GeoTIFF and return its class map.

    Args:
        path: output GeoTIFF.
        width, height: size in pixels.
        n_bands: number of bands.
        seed: random seed (different seeds give different, independent scenes).
        crs: CRS of the raster.
        transform: affine transform (default: UTM origin, 3 m pixels).
        nodata: nodata value written in the raster's metadata (no pixel is set to it).
        dtype: raster data type; integer types get rounded reflectances.

    Returns:
        (height, width) uint8 class map, ids 1..3.
    """
    class_map = make_class_map(width, height, seed)
    image = make_image(class_map, n_bands, seed)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(np.dtype(dtype))
        image = np.clip(np.round(image), info.min, info.max)
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=n_bands,
        dtype=dtype,
        crs=crs,
        transform=transform or DEFAULT_TRANSFORM,
        nodata=nodata,
        tiled=True,
        blockxsize=64,
        blockysize=64,
    )
    if width < 64 or height < 64:
        profile.update(tiled=False)
        profile.pop("blockxsize")
        profile.pop("blockysize")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image.astype(dtype))
    return class_map


def write_mask(
    path: str, class_map: np.ndarray, like_path: str, nodata=None, dtype: str = "uint8"
) -> str:
    """Write a single-band class mask on the grid of another raster.

    Args:
        path: output GeoTIFF.
        class_map: (rows, cols) class ids (0 = unlabelled).
        like_path: raster whose CRS, transform and size the mask takes.
        nodata: nodata value for the mask (default none; 0 means unlabelled anyway).
        dtype: mask data type.

    Returns:
        ``path``.
    """
    with rasterio.open(like_path) as like:
        profile = dict(
            driver="GTiff",
            width=like.width,
            height=like.height,
            count=1,
            dtype=dtype,
            crs=like.crs,
            transform=like.transform,
            nodata=nodata,
        )
    if class_map.shape != (profile["height"], profile["width"]):
        raise ValueError(f"class map {class_map.shape} does not match {like_path}")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.asarray(class_map).astype(dtype)[None])
    return path


def write_onehot_mask(path: str, class_map: np.ndarray, like_path: str, n_classes: int = 3) -> str:
    """Write a multi-band one-hot mask (one band per class, 1 where the class is).

    Pixels with class 0 get 0 in every band (unlabelled).
    """
    with rasterio.open(like_path) as like:
        profile = dict(
            driver="GTiff",
            width=like.width,
            height=like.height,
            count=n_classes,
            dtype="uint8",
            crs=like.crs,
            transform=like.transform,
        )
    bands = np.stack([(class_map == c + 1) for c in range(n_classes)]).astype(np.uint8)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)
    return path
