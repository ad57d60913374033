"""MODEL_SIZE, TIME_LIMIT auto and BASELINE in the Train dialog and through processing.run."""

import pytest

from tests.processing.conftest import NAMES
from wetland_unet_plugin.core.modelfile import read_metadata

pytestmark = pytest.mark.usefixtures("provider")


def test_train_dialog_offers_model_size_and_leaves_the_architecture_to_it():
    from qgis.core import QgsApplication, QgsProcessingParameterDefinition

    alg = QgsApplication.processingRegistry().algorithmById("wetlandunet:train")
    size = alg.parameterDefinition("MODEL_SIZE")
    assert size.options() == ["auto", "small", "medium", "large"]
    assert size.defaultValue() == "auto"
    assert not size.flags() & QgsProcessingParameterDefinition.FlagAdvanced
    for name in ("FILTERS", "DEPTH", "PATCH_SIZE", "BATCH_SIZE", "LEARNING_RATE", "EPOCHS"):
        definition = alg.parameterDefinition(name)
        assert definition.defaultValue() is None, name
        assert definition.flags() & QgsProcessingParameterDefinition.FlagOptional, name
    assert alg.parameterDefinition("TIME_LIMIT").defaultValue() == -1.0
    assert "-1 = auto: 15 on a CPU" in alg.parameterDefinition("TIME_LIMIT").description()
    assert alg.parameterDefinition("BASELINE").defaultValue() is True


@pytest.mark.slow
def test_train_with_a_typed_model_size_records_it(scenes, tmp_path):
    """MODEL_SIZE as a user types it; FILTERS given wins; BASELINE off leaves no baseline."""
    import processing

    result = processing.run(
        "wetlandunet:train",
        dict(
            IMAGES=[p[0] for p in scenes["pairs"]],
            MASKS=[p[1] for p in scenes["pairs"]],
            CLASS_NAMES=NAMES,
            MODEL_SIZE="medium",
            FILTERS=4,
            VAL_SPLIT="images",
            TRAIN_SIZE=16,
            VAL_SIZE=8,
            EPOCHS=1,
            TIME_LIMIT=0,
            BASELINE=False,
            XLA=False,
            SEED=1,
            OUTPUT_MODEL=str(tmp_path / "medium.keras"),
        ),
    )
    meta = read_metadata(result["OUTPUT_MODEL"])
    assert (meta["patch_size"], meta["depth"], meta["filters"]) == (64, 4, 4)
    size = meta["model_size"]
    assert (size["asked"], size["used"]) == ("medium", "medium")
    assert size["explicit"] == ["FILTERS", "EPOCHS"]
    # Medium's schedule for what was left empty: batches of 8 at 0.001.
    assert (meta["training"]["batch_size"], meta["training"]["learning_rate"]) == (8, 0.001)
    assert meta["training"]["time_limit_min"] == 0
    assert "baseline" not in meta
