"""Planet's usable-data masks: UDM2 (8 bands) and the legacy UDM (1 band), decoded to masks.

UDM2 bands: 1 clear, 2 snow, 3 shadow, 4 light haze, 5 heavy haze, 6 cloud (1 where
the class is), 7 confidence (0..100), 8 the legacy UDM bitmask. The legacy bitmask:
bit 0 blackfill (outside the imaged area), bits 1..7 data missing or suspect in a
band. Blackfill and those bits are always masked; the classes are masked as asked.
"""

from __future__ import annotations

import numpy as np

from ..feedback import CoreError

#: The UDM2 band of each class a user may mask (1-based).
UDM2_CLASSES = {"snow": 2, "shadow": 3, "light_haze": 4, "heavy_haze": 5, "cloud": 6}
#: The UDM2 band holding the legacy bitmask.
UDM2_BITMASK_BAND = 8


def udm_kind(dataset, path: str) -> str:
    """``udm2`` (8 bands) or ``legacy`` (1 band).

    Raises:
        CoreError: for any other band count.
    """
    if dataset.count == 8:
        return "udm2"
    if dataset.count == 1:
        return "legacy"
    raise CoreError(
        f"The UDM '{path}' has {dataset.count} bands: a Planet usable-data mask is a UDM2 "
        "(8 bands: clear, snow, shadow, light haze, heavy haze, cloud, confidence, "
        "unusable data) or a legacy UDM (1 band). Give the scene's own udm2 file."
    )


def udm_bands(kind: str, classes) -> list:
    """The 1-based UDM bands to read for ``kind`` and the masked ``classes``."""
    if kind == "legacy":
        return [1]
    return sorted({UDM2_CLASSES[c] for c in classes}) + [UDM2_BITMASK_BAND]


def decode(block: np.ndarray, kind: str, classes) -> np.ndarray:
    """True where a pixel is masked.

    Args:
        block: (bands, rows, cols) as read with ``udm_bands(kind, classes)``.
        kind: ``udm2`` or ``legacy``.
        classes: the UDM2 classes to mask (ignored for a legacy UDM, whose bits all mask).

    Returns:
        (rows, cols) boolean array.
    """
    if kind == "legacy":
        return block[0] != 0  # blackfill and every unusable-data bit
    masked = block[-1] != 0  # the bitmask band: blackfill and unusable data
    masked |= (block[:-1] != 0).any(axis=0) if len(block) > 1 else False
    return masked
