"""One schema per job: checking values, and the CLI generated from it (no QGIS)."""

import subprocess
import sys

import pytest

from wetland_unet_plugin.core.cli import build_parser
from wetland_unet_plugin.core.feedback import CoreError
from wetland_unet_plugin.core.schema import JOBS, PREDICT, TRAIN
from wetland_unet_plugin.core.schema.base import Job, Param


def test_choices_take_the_values_users_type():
    tta = PREDICT.param("TTA")
    assert [tta.check(v) for v in ("1", 2, "4", 8.0, " 8 ")] == [1, 2, 4, 8, 8]
    assert TRAIN.param("LR_SCHEDULE").check("Cosine") == "cosine"
    with pytest.raises(CoreError, match=r"TTA must be one of 1, 2, 4, 8 \(got '3'\)"):
        tta.check("3")
    with pytest.raises(CoreError, match="LR_SCHEDULE must be one of plateau, cosine"):
        TRAIN.param("LR_SCHEDULE").check(1)  # a list position is not a value


def test_a_switch_with_an_auto_state_takes_the_true_and_false_it_took_as_a_checkbox():
    balance = TRAIN.param("BALANCE_CLASSES")
    assert balance.default == "auto"
    typed = (True, False, "true", "False", "yes", "no", 1, 0, "ON", "off", "auto", " Auto ")
    assert [balance.check(v) for v in typed] == [
        "on",
        "off",
        "on",
        "off",
        "on",
        "off",
        "on",
        "off",
        "on",
        "off",
        "auto",
        "auto",
    ]
    assert balance.check(None) == balance.check("") == "auto"
    with pytest.raises(CoreError, match=r"BALANCE_CLASSES must be one of auto, on, off"):
        balance.check("sometimes")


def test_numbers_booleans_and_paths_are_checked_with_their_names():
    assert TRAIN.param("EPOCHS").check("12") == 12
    with pytest.raises(CoreError, match="EPOCHS must be a whole number"):
        TRAIN.param("EPOCHS").check(2.5)
    with pytest.raises(CoreError, match="DEPTH must be at least 1 and at most 8"):
        TRAIN.param("DEPTH").check(9)
    with pytest.raises(CoreError, match="VAL_FRACTION must be above 0 and at most 0.9"):
        TRAIN.param("VAL_FRACTION").check(0)
    assert TRAIN.param("XLA").check("false") is False
    assert TRAIN.param("XLA").check(1) is True
    with pytest.raises(CoreError, match="XLA must be true or false"):
        TRAIN.param("XLA").check("maybe")
    assert TRAIN.param("IMAGES").check("a.tif; b.tif") == ["a.tif", "b.tif"]


def test_check_fills_defaults_refuses_unknown_and_missing():
    values = TRAIN.check(
        dict(images=["a.tif"], masks=["m.tif"], class_names="a,b", output_model="m.keras")
    )
    assert values["val_size"] == 1000 and values["lr_schedule"] == "cosine"
    # Left empty for MODEL_SIZE to fill (training/sizing.py).
    assert values["epochs"] is None and values["batch_size"] is None
    assert values["learning_rate"] is None and values["patch_size"] is None
    assert values["early_stopping_patience"] == -1 and values["seed"] is None
    with pytest.raises(CoreError, match="Unknown parameter.*epoch\\b"):
        TRAIN.check(dict(values, epoch=3))
    with pytest.raises(CoreError, match="CLASS_NAMES is required"):
        TRAIN.check(dict(images=["a.tif"], masks=["m.tif"], output_model="m.keras"))


def test_a_parameter_is_declared_once():
    with pytest.raises(ValueError, match="declared twice"):
        Job("x", "x", "x", "g", "G", "", "m:f", (Param("A", "int", "a"), Param("A", "int", "b")))


def test_cli_has_one_option_per_parameter_with_schema_defaults():
    parser = build_parser()
    for job in (j for j in JOBS if j.function):
        args = parser.parse_args(
            [job.name]
            + [
                arg
                for p in job.params
                if p.required and p.cli
                for arg in (f"--{p.name.lower().replace('_', '-')}", "x")
            ]
        )
        for p in job.params:
            if p.cli and not p.required:
                assert getattr(args, p.key) == p.default, (job.name, p.name)


def test_cli_refuses_a_choice_that_is_not_allowed(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["predict", "--model", "m", "--input", "i", "--output", "o", "--tta", "3"]
        )
    assert "TTA must be one of 1, 2, 4, 8" in capsys.readouterr().err


def test_train_help_lists_every_train_parameter():
    help_text = subprocess.run(
        [sys.executable, "-m", "wetland_unet_plugin.core", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for p in TRAIN.params:
        assert f"--{p.name.lower().replace('_', '-')}" in help_text, p.name
    assert "--time-limit" in help_text and "--lr-schedule {plateau,cosine}" in help_text
