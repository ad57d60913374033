"""Command line of the Wetland U-Net core, for GPU servers and scripts without QGIS.

    python -m wetland_unet_plugin.core --help
    python -m wetland_unet_plugin.core predict --model m.keras --input scene.tif --output map.tif
    python -m wetland_unet_plugin.core worker     # the process QGIS talks to
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .feedback import Canceled, ConsoleFeedback, CoreError


def _csv(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser: one sub-command per job, plus info and worker."""
    parser = argparse.ArgumentParser(prog="python -m wetland_unet_plugin.core",
                                     description="Wetland U-Net: align, clean, train, "
                                     "predict and evaluate land-cover maps without QGIS.")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("align", help="reproject and pixel-align an image/mask pair")
    p.add_argument("--image", required=True)
    p.add_argument("--mask")
    p.add_argument("--mask-vector")
    p.add_argument("--vector-layer")
    p.add_argument("--class-field")
    p.add_argument("--class-names", type=_csv)
    p.add_argument("--target-crs")
    p.add_argument("--pixel-size", type=float, default=0.0)
    p.add_argument("--resampling", default="bilinear")
    p.add_argument("--output-image", required=True)
    p.add_argument("--output-mask", required=True)

    p = sub.add_parser("clean", help="make NaN/Inf/-1/nodata pixels nodata, or fill them")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--invalid-values", default="-1")
    p.add_argument("--mode", default="nodata", choices=["nodata", "constant", "interpolate"])
    p.add_argument("--fill-value", type=float, default=0.0)

    p = sub.add_parser("train", help="train a U-Net from aligned image/mask pairs")
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--masks", nargs="+", required=True)
    p.add_argument("--class-names", type=_csv, required=True)
    p.add_argument("--class-colors", type=_csv)
    p.add_argument("--class-weights", default="auto")
    p.add_argument("--patch-size", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--val-size", type=int, default=1000)
    p.add_argument("--epochs", type=int)
    p.add_argument("--val-fraction", type=float, default=0.25)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--filters", type=int, default=32)
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int)
    p.add_argument("--init-model")
    p.add_argument("--bands")
    p.add_argument("--no-xla", action="store_true",
                   help="do not compile training with XLA (on by default)")
    p.add_argument("--no-spectral-skip", action="store_true",
                   help="a plain U-Net: no per-pixel band values at the last layers")
    p.add_argument("--output-model", required=True)
    p.add_argument("--output-report")

    p = sub.add_parser("predict", help="classify a scene with a trained model (tiled)")
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--output-probabilities")
    p.add_argument("--output-map")
    p.add_argument("--tile-size", type=int)
    p.add_argument("--overlap", type=int)
    p.add_argument("--tta", type=int, default=1, choices=[1, 2, 4, 8])
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--precision", default="float32",
                   choices=["float32", "mixed_float16", "mixed_bfloat16"])

    p = sub.add_parser("evaluate", help="accuracy of a class map against a reference")
    p.add_argument("--prediction", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--model")
    p.add_argument("--class-names", type=_csv)
    p.add_argument("--output-html")
    p.add_argument("--output-table")

    p = sub.add_parser("info", help="print a model file's metadata (no TensorFlow needed)")
    p.add_argument("model")

    sub.add_parser("worker", help="serve jobs as JSON lines on stdin/stdout (used by QGIS)")
    return parser


def _job_params(args) -> tuple[str, dict]:
    params = {k: v for k, v in vars(args).items() if k not in ("command", "quiet")}
    if args.command == "train":
        params["augment"] = not params.pop("no_augment")
        params["xla"] = not params.pop("no_xla")
        params["spectral_skip"] = not params.pop("no_spectral_skip")
        if params.get("epochs") is None:
            params.pop("epochs")
    if args.command == "predict":
        for key in ("tile_size", "overlap"):
            if params.get(key) is None:
                params.pop(key)
    return args.command, params


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

    name, params = _job_params(args)
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
    print(f"{name} done in {seconds:.1f} s: " + ", ".join(f"{k}={v}" for k, v in summary.items()),
          file=sys.stderr)
    json.dump(result, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
