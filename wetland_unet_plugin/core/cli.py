"""The core's command line, generated from the job schemas (``core/schema``).

Every parameter of a job is an option named after its Processing name
(``TTA`` -> ``--tta``, ``EARLY_STOPPING`` -> ``--early-stopping``), with the same
default and the same allowed values; booleans come as ``--xla/--no-xla``.

    python -m wetland_unet_plugin.core --help
    python -m wetland_unet_plugin.core predict --model m.keras --input scene.tif --output map.tif
    python -m wetland_unet_plugin.core worker     # the process QGIS talks to
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .feedback import Canceled, ConsoleFeedback, CoreError
from .schema import JOBS

#: Extra words for the help of each kind of parameter.
_KIND_HELP = {
    "rasters": "one or more rasters",
    "raster": "raster file",
    "vector": "vector file (GeoPackage, Shapefile, ...)",
    "layer": "raster, or vector file (GeoPackage, Shapefile, ...)",
    "crs": "EPSG:xxxx or WKT",
    "field": "attribute name",
    "folder_out": "folder",
    "file_out": "file to write",
    "raster_out": "GeoTIFF to write",
}


def option_name(param) -> str:
    """The CLI option of a parameter: ``--`` and its name in lower case with dashes."""
    return "--" + param.name.lower().replace("_", "-")


def _help(param) -> str:
    parts = [param.description]
    if param.kind in ("choice", "choices"):
        parts.append(f"one of {param.allowed()}")
    elif param.kind in _KIND_HELP:
        parts.append(_KIND_HELP[param.kind])
    if param.kind == "bool":
        parts.append(f"default: {'on' if param.default else 'off'}")
    elif param.default is not None:
        parts.append(f"default: {param.default}")
    return "; ".join(parts).replace("%", "%%")


def _choice_type(param):
    def convert(text):
        try:
            return param.parse_choice(text)
        except CoreError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = param.name
    return convert


def add_job_arguments(parser: argparse.ArgumentParser, job) -> None:
    """Add one option per parameter of ``job`` (those offered on the CLI)."""
    for param in job.params:
        if not param.cli:
            continue
        kwargs = dict(dest=param.key, help=_help(param))
        if param.kind not in ("bool", "choice", "choices"):
            kwargs["metavar"] = param.name
        if param.kind == "bool":
            kwargs.update(action=argparse.BooleanOptionalAction, default=param.default)
        elif param.kind == "choice":
            kwargs.update(
                type=_choice_type(param),
                default=param.default,
                metavar="{" + ",".join(str(c) for c in param.choices) + "}",
            )
        elif param.kind == "choices":
            kwargs.update(type=_choice_type(param), nargs="+", default=param.default)
        elif param.kind == "rasters":
            kwargs.update(nargs="+", default=param.default)
        elif param.kind == "int":
            kwargs.update(type=int, default=param.default)
        elif param.kind == "float":
            kwargs.update(type=float, default=param.default)
        else:
            kwargs.update(default=param.default)
        kwargs["required"] = param.required
        parser.add_argument(option_name(param), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser: one sub-command per job, plus info and worker."""
    parser = argparse.ArgumentParser(
        prog="python -m wetland_unet_plugin.core",
        description="Wetland U-Net: align, clean, train, predict and evaluate land-cover "
        "maps without QGIS. Options mirror the Processing parameters "
        "(TTA=4 in qgis_process is --tta 4 here).",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    sub = parser.add_subparsers(dest="command", required=True)
    for job in JOBS:
        if not job.function:  # styling needs QGIS
            continue
        p = sub.add_parser(
            job.name, help=job.display_name, description=job.summary.split("\n\n")[0]
        )
        add_job_arguments(p, job)
    p = sub.add_parser("info", help="print a model file's metadata (no TensorFlow needed)")
    p.add_argument("model")
    sub.add_parser("worker", help="serve jobs as JSON lines on stdin/stdout (used by QGIS)")
    return parser


def main(argv=None) -> int:
    """Run the CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "worker":
        from .worker import serve

        return serve()
    if args.command == "info":
        from .modelfile import read_metadata

        try:
            print(json.dumps(read_metadata(args.model), indent=1))
        except CoreError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0

    from .jobs import run_job

    name = args.command
    params = {k: v for k, v in vars(args).items() if k not in ("command", "quiet")}
    feedback = ConsoleFeedback(description=name, quiet=args.quiet)
    start = time.perf_counter()
    try:
        result = run_job(name, params, feedback)
    except Canceled as err:
        feedback.close()
        print(f"canceled: {err}", file=sys.stderr)
        return 130
    except CoreError as err:
        feedback.close()
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        feedback.close()
        print("interrupted; no partial output was left", file=sys.stderr)
        return 130
    feedback.close()
    seconds = time.perf_counter() - start
    summary = {k: v for k, v in result.items() if not isinstance(v, (list, dict))}
    print(
        f"{name} done in {seconds:.1f} s: " + ", ".join(f"{k}={v}" for k, v in summary.items()),
        file=sys.stderr,
    )
    json.dump(result, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0
