"""The README's and the guides' commands use parameters and values that exist (checked
against the schema), and their links lead to files that exist."""

import glob
import os
import re
import shlex

import pytest

from wetland_unet_plugin.core.cli import build_parser
from wetland_unet_plugin.core.schema import BY_ALG_ID

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def readme_commands():
    """Shell commands of the README's and the guides' code blocks, continuation lines joined."""
    text = "\n".join(open(path, encoding="utf-8").read() for path in DOCS)
    commands = []
    for block in re.findall(r"```(?:bash)?\n(.*?)```", text, flags=re.S):
        commands += [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]
    return commands


QGIS = [c for c in readme_commands() if "qgis_process.bin run wetlandunet:" in c]
CLI = [
    c for c in readme_commands() if "python -m wetland_unet_plugin.core " in c and "--help" not in c
]


def test_the_readme_has_commands_of_both_kinds():
    assert QGIS and len(CLI) >= 3


@pytest.mark.parametrize("command", QGIS)
def test_qgis_process_examples_name_real_parameters_and_allowed_values(command):
    words = shlex.split(command)
    alg_id = next(w for w in words if w.startswith("wetlandunet:")).split(":")[1]
    job = BY_ALG_ID[alg_id]
    values = dict(w.split("=", 1) for w in words[words.index("--") + 1 :])
    for name, value in values.items():
        job.param(name).check(value)  # raises for an unknown name or a value not allowed
    assert "TTA" not in values or job.param("TTA").check(values["TTA"]) == int(values["TTA"])


@pytest.mark.parametrize("command", CLI)
def test_cli_examples_parse(command):
    words = shlex.split(command.replace('"$SCENE"', "scene.tif").replace('"$OUT"', "out.tif"))
    args = words[words.index("wetland_unet_plugin.core") + 1 :]
    build_parser().parse_args(args)  # exits with status 2 on an unknown option or value


@pytest.mark.parametrize("path", DOCS, ids=os.path.basename)
def test_relative_links_lead_to_files(path):
    text = open(path, encoding="utf-8").read()
    for target in re.findall(r"\]\(([^)#\s]+)", text):
        if "://" in target:
            continue
        assert os.path.exists(os.path.join(os.path.dirname(path), target)), target
