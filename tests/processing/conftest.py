"""Fixtures shared by the Processing tests: generated scenes and one tiny trained model."""

import pytest

from tests.core.synthetic import make_scene, write_mask

NAMES = "water,wetland,forest"
COLORS = "#0000ff,#00ffff,#008000"
#: XLA is off (its compilation outweighs a tiny model's training) except in ``trained``,
#: which keeps the default.
TINY = {
    "PATCH_SIZE": 32,
    "BATCH_SIZE": 8,
    "TRAIN_SIZE": 96,
    "VAL_SIZE": 32,
    "EPOCHS": 6,
    "FILTERS": 8,
    "DEPTH": 2,
    "LEARNING_RATE": 0.01,
    "SEED": 3,
    "XLA": False,
}


@pytest.fixture(scope="session")
def scenes(tmp_path_factory):
    """Two training pairs and an independent test scene with its truth."""
    folder = tmp_path_factory.mktemp("scenes")
    pairs = []
    for seed in (1, 2):
        image = str(folder / f"train{seed}.tif")
        class_map = make_scene(image, 160, 128, seed=seed)
        pairs.append((image, write_mask(str(folder / f"mask{seed}.tif"), class_map, image)))
    test_image = str(folder / "test.tif")
    truth = make_scene(test_image, 150, 110, seed=9)
    truth_path = write_mask(str(folder / "truth.tif"), truth, test_image)
    return {
        "pairs": pairs,
        "test": test_image,
        "truth": truth,
        "truth_path": truth_path,
        "folder": folder,
    }


@pytest.fixture(scope="session")
def trained(scenes, provider):
    """A tiny model trained through processing.run (worker process)."""
    import processing

    folder = scenes["folder"]
    params = {k: v for k, v in TINY.items() if k != "XLA"}  # the default: XLA on
    result = processing.run(
        "wetlandunet:train",
        dict(
            params,
            IMAGES=[p[0] for p in scenes["pairs"]],
            MASKS=[p[1] for p in scenes["pairs"]],
            CLASS_NAMES=NAMES,
            CLASS_COLORS=COLORS,
            OUTPUT_MODEL=str(folder / "model.keras"),
            OUTPUT_REPORT=str(folder / "report.html"),
        ),
    )
    return result
