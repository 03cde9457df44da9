"""The ``automl`` command: ``run`` the pipeline flow, ``serve`` it on a schedule, or run one DVC ``stage``.

Errors that are the user's to fix (bad data, unknown params) print as one message, no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from automl.config import load_params, parse_set
from automl.errors import AutoMLError

# Offline-friendly defaults: no telemetry, and room for the first start of Prefect's temporary server
# (it creates its database then, which can take longer than Prefect's default wait).
QUIET_ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
             "DVC_NO_ANALYTICS": "1", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
             "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="automl", description="Neural architecture search for image "
                                     "classification, as a tracked, reproducible pipeline.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole pipeline (Prefect flow) with params.yaml",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _common(run)
    run.add_argument("--csv", help="labels CSV of your own data (first column file name, second label)")
    run.add_argument("--images", help="folder of your own images (paths in the CSV are relative to it)")
    run.add_argument("--quiet", action="store_true", help="print only the final summary")
    run.add_argument("--resume", action="store_true", help="continue the search a killed or stopped run left "
                     "in paths.work (same data and params; the time limit counts the time already spent)")
    serve = sub.add_parser("serve", help="register the pipeline as a Prefect deployment with a schedule and "
                           "run its scheduled runs (needs a Prefect server: see README)",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _common(serve)
    serve.add_argument("--cron", help='schedule, e.g. "0 2 * * *" (every night at 02:00); none: runs only on demand')
    serve.add_argument("--name", default="automl", help="deployment name (runs: prefect deployment run "
                       "automl-pipeline/NAME)")
    stage = sub.add_parser("stage", help="run one pipeline stage (what dvc.yaml calls)",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    stage.add_argument("name", help="ingest | split | preprocess | search | final_fit | evaluate | export")
    _common(stage)
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="parameters file (defaults apply if it is absent)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter, e.g. --set search.time_limit=120 (repeatable)")


def main(argv: list[str] | None = None) -> int:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    args = _parser().parse_args(argv)
    try:
        overrides = parse_set(args.overrides)
        if getattr(args, "csv", None) or getattr(args, "images", None):
            if not (args.csv and args.images):
                raise AutoMLError("--csv and --images go together: the CSV names files inside the images folder.")
            overrides.update({"data.csv": args.csv, "data.images": args.images, "data.source": ""})
        params = load_params(args.params, overrides)
        if args.command == "stage":
            from tasks.stages import run_stage

            print(json.dumps(run_stage(args.name, params), indent=1, default=str))
            return 0
        if args.command == "serve":
            from flows.pipeline import serve

            serve(params, args.name, args.cron)
            return 0
        from flows.pipeline import run_pipeline
        from flows.runners import task_runner
        from tasks.data import check_user_data

        check_user_data(params)
        task_runner(params)  # a runner that cannot start (prefect-dask missing) fails before any work
        result = run_pipeline(params, quiet=args.quiet, resume=args.resume)
    except AutoMLError as exc:
        print(f"automl: error: {exc}", file=sys.stderr)
        return 2
    _summary(result)
    return 0


def _summary(result: dict) -> None:
    metrics, exported = result["metrics"], result["export"]
    print(f"\nTest accuracy: {metrics['test_accuracy']:.4f} on {metrics['test_size']} images "
          f"(best search val accuracy {metrics['search_best_val_accuracy']:.4f}, "
          f"{metrics['n_candidates']} candidate(s))")
    print(f"Exported: {Path(exported['torchscript']).parent}/ (TorchScript, ONNX, labels.json)")
    print(f"MLflow model: {exported['model_uri']} (parent run {exported['run_id']})")
    if registered := exported.get("registered"):
        print(f"Registered: {registered['uri']} (version {registered['version']}: {registered['reason']})")
    print("Browse runs: mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --workers 1")


if __name__ == "__main__":
    sys.exit(main())
