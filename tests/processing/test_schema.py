"""The Processing algorithms and the core CLI come from one schema per job: same
parameters, same defaults, choices as the values users type."""

import argparse

import pytest

from wetland_unet_plugin.core.cli import build_parser, option_name
from wetland_unet_plugin.core.schema import JOBS

pytestmark = pytest.mark.usefixtures("provider")

#: Hand-written: what each algorithm must offer, so the generated lists cannot
#: both lose a parameter unnoticed.
PUBLIC = {
    "alignpair": {
        "IMAGE",
        "MASK",
        "MASK_VECTOR",
        "CLASS_FIELD",
        "CLASS_NAMES",
        "TARGET_CRS",
        "PIXEL_SIZE",
        "RESAMPLING",
        "RPC",
        "DEM",
        "OUTPUT_IMAGE",
        "OUTPUT_MASK",
    },
    "cleaninvalid": {"INPUT", "INVALID_VALUES", "MODE", "FILL_VALUE", "OUTPUT"},
    "train": {
        "IMAGES",
        "MASKS",
        "CLASS_NAMES",
        "CLASS_COLORS",
        "CLASS_WEIGHTS",
        "MODEL_SIZE",
        "PATCH_SIZE",
        "BATCH_SIZE",
        "TRAIN_SIZE",
        "VAL_SIZE",
        "EPOCHS",
        "VAL_FRACTION",
        "AUGMENT",
        "FILTERS",
        "DEPTH",
        "LEARNING_RATE",
        "SEED",
        "INIT_MODEL",
        "BANDS",
        "LOSS",
        "EARLY_STOPPING",
        "REDUCE_LR",
        "LR_SCHEDULE",
        "VAL_SPLIT",
        "JITTER",
        "DROPOUT",
        "TIME_LIMIT",
        "XLA",
        "SPECTRAL_SKIP",
        "BALANCE_CLASSES",
        "BASELINE",
        "KEEP_BEST_ON_CANCEL",
        "TENSORBOARD_DIR",
        "OUTPUT_MODEL",
        "OUTPUT_REPORT",
    },
    "predict": {
        "MODEL",
        "INPUT",
        "TILE_SIZE",
        "OVERLAP",
        "TTA",
        "BATCH_SIZE",
        "PRECISION",
        "PROBABILITY_TYPE",
        "OUTPUT",
        "OUTPUT_PROBABILITIES",
        "OUTPUT_MAP",
        "OUTPUT_UNCERTAINTY",
        "OUTPUT_AREAS",
    },
    "evaluate": {
        "PREDICTION",
        "REFERENCE",
        "MODEL",
        "CLASS_NAMES",
        "OUTPUT_HTML",
        "OUTPUT_TABLE",
        "REFERENCE_FIELD",
        "STRATIFIED",
        "OUTPUT_AREAS",
    },
    "samplepoints": {
        "INPUT",
        "MODEL",
        "CLASS_NAMES",
        "SAMPLE_SIZE",
        "MIN_PER_CLASS",
        "ALLOCATION",
        "EXPECTED_USER_ACCURACY",
        "TARGET_STANDARD_ERROR",
        "SEED",
        "OUTPUT",
    },
    "predictmany": {
        "INPUTS",
        "MODEL",
        "TTA",
        "PREPARE",
        "MASK_CLASSES",
        "SKIP_EXISTING",
        "TARGET_CRS",
        "OUTPUT_FOLDER",
        "OUTPUT_TABLE",
        "OUTPUT_MOSAIC",
    },
    "mergemany": {"TABLES", "FOLDER", "TARGET_CRS", "OUTPUT_TABLE", "OUTPUT_MOSAIC"},
    "styleclassified": {"INPUT", "MODEL", "CLASS_NAMES", "CLASS_COLORS", "OUTPUT_STYLE"},
    "cleanmap": {
        "INPUT",
        "MODEL",
        "CLASS_NAMES",
        "CLASS_COLORS",
        "MMU_HA",
        "MMU_PER_CLASS",
        "CONNECTIVITY",
        "PROBABILITIES",
        "UNCERTAINTY",
        "OUTPUT",
        "OUTPUT_POLYGONS",
    },
    "preparescene": {
        "INPUT",
        "UDM",
        "MASK_CLASSES",
        "MASK_BUFFER",
        "RADIOMETRY",
        "DEM",
        "TARGET_CRS",
        "PIXEL_SIZE",
        "OUTPUT",
    },
    "setupworker": {"PYTHON", "FOLDER", "DEVICE", "REQUIREMENTS", "PIP_OPTIONS"},
    "diagnostics": {"OUTPUT_REPORT"},
}


def algorithm(alg_id):
    from qgis.core import QgsApplication

    return QgsApplication.processingRegistry().algorithmById(f"wetlandunet:{alg_id}")


def cli_options(job_name):
    """option string -> argparse action of a CLI sub-command."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {s: a for a in sub.choices[job_name]._actions for s in a.option_strings}


def normal(value):
    """Defaults compared as text: QGIS holds enum choices as their strings."""
    return None if value is None else str(value)


@pytest.mark.parametrize("job", JOBS, ids=[j.alg_id for j in JOBS])
def test_every_algorithm_offers_its_public_parameters(job):
    alg = algorithm(job.alg_id)
    names = {d.name() for d in alg.parameterDefinitions()}
    assert PUBLIC[job.alg_id] <= names, PUBLIC[job.alg_id] - names


@pytest.mark.parametrize("job", [j for j in JOBS if j.function], ids=lambda j: j.name)
def test_cli_lists_every_processing_parameter_with_the_same_default(job):
    """`python -m wetland_unet_plugin.core <job> --help` offers what the dialog offers."""
    from qgis.core import QgsProcessingParameterDefinition

    options = cli_options(job.name)
    alg = algorithm(job.alg_id)
    for definition in alg.parameterDefinitions():
        option = option_name(job.param(definition.name()))
        assert option in options, f"{job.name}: {definition.name()} has no {option}"
        action = options[option]
        if definition.isDestination():
            continue
        expected = definition.defaultValue()
        assert normal(action.default) == normal(expected), (
            definition.name(),
            action.default,
            expected,
        )
        advanced = bool(definition.flags() & QgsProcessingParameterDefinition.FlagAdvanced)
        assert advanced == job.param(definition.name()).advanced


@pytest.mark.parametrize(
    "job, name",
    [(j, p.name) for j in JOBS for p in j.params if p.kind == "choice" and p.processing],
    ids=lambda x: getattr(x, "alg_id", x),
)
def test_choices_are_the_values_users_type(job, name):
    """Every allowed value is accepted as typed; anything else fails naming them all."""
    from qgis.core import QgsProcessingContext

    from wetland_unet_plugin.processing.parameters import check_choices

    alg = algorithm(job.alg_id)
    param = job.param(name)
    context = QgsProcessingContext()
    definition = alg.parameterDefinition(name)
    assert definition.options() == [str(c) for c in param.choices]
    assert normal(definition.defaultValue()) == normal(param.default)
    for choice in param.choices:
        assert definition.checkValueIsAcceptable(str(choice), context), choice
    ok, message = alg.checkParameterValues({name: "no-such-value"}, context)
    assert not ok
    assert message == f"{name} must be one of {param.allowed()} (got 'no-such-value')."
    # A list position is not a value: index 1 is refused unless 1 is itself allowed, or
    # the choice is a switch (on, off, ...) that reads 1 as true, as its checkbox did.
    ok, message = alg.checkParameterValues({name: 1}, context)
    if {"on", "off"} <= set(param.choices):
        assert param.allowed() not in message
        assert check_choices(job, {name: 1, "X": 2}) == ({name: "on", "X": 2}, None)
        assert check_choices(job, {name: False})[0] == {name: "off"}
    elif 1 not in param.choices:
        assert not ok and param.allowed() in message


def test_tta_as_a_number_or_text_runs_that_many_transforms(trained, scenes, tmp_path):
    """TTA=4 (a number in a script, text in qgis_process) means four transforms."""
    import processing
    from qgis.core import QgsProcessingFeedback

    class Log(QgsProcessingFeedback):
        lines = []

        def pushInfo(self, text):
            self.lines.append(text)

    for tta in (4, "8"):
        log = Log()
        processing.run(
            "wetlandunet:predict",
            {
                "MODEL": trained["OUTPUT_MODEL"],
                "INPUT": scenes["test"],
                "TTA": tta,
                "OUTPUT": str(tmp_path / f"map{tta}.tif"),
            },
            feedback=log,
        )
        assert any(f"TTA {tta}," in line for line in log.lines), log.lines
