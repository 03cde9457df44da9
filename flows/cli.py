"""The ``automl`` command: ``run`` the pipeline flow, ``serve`` it on a schedule, or run one DVC ``stage``.

Errors that are the user's to fix (bad data, unknown params) print as one message, no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from automl import __version__
from automl.config import load_params, parse_set
from automl.errors import AutoMLError, users_to_fix
from flows.runlog import quiet_expected_errors, run_log
from tasks.settings import PipelineParams
from tasks.stages import STAGES

if TYPE_CHECKING:
    from automl.data.validate import CheckedDataset

# Offline-friendly defaults: no telemetry, and room for the first start of Prefect's temporary server
# (it creates its database then, which can take longer than Prefect's default wait).
QUIET_ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
             "DVC_NO_ANALYTICS": "1", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
             "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}

PARAMS_FILE = "params.yaml"
EXAMPLES = {
    "run": ["automl run", "automl run --csv my/labels.csv --images my/images --set search.time_limit=3600",
            "automl run --resume"],
    "check": ["automl check --csv my/labels.csv --images my/images"],
    "serve": ['automl serve --cron "0 2 * * *" --timezone Europe/Berlin --name nightly'],
    "stage": ["automl stage split      # what `dvc repro` runs, one stage at a time"],
    "params": ["automl params", "automl params --yaml > params.yaml"],
    "predict": ["automl predict exported/ photo.png more/", "automl predict models:/automl-image-classifier@champion "
                "images/ --output predictions.csv"],
    "report": ["automl report 5eb4c77be6284c67bfb84ba9acff0c2e"],
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, and the examples below the options kept as written."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="automl", description="Neural architecture search for image "
                                     "classification, as a tracked, reproducible pipeline.")
    parser.add_argument("--version", action="version", version=f"automl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole pipeline (Prefect flow) with params.yaml",
                         description="Run ingest, split, preprocess, search, final fit, evaluate, report and "
                         "export under one MLflow run. `automl params` lists every param --set can change.",
                         formatter_class=_Formatter, epilog=_examples("run"))
    _common(run)
    _data(run)
    run.add_argument("--quiet", action="store_true", help="print only the final summary")
    run.add_argument("--resume", action="store_true", help="continue the search a killed or stopped run left "
                     "in paths.work (same data and params; the time limit counts the time already spent)")
    check = sub.add_parser("check", help="check your data (the CSV and every image) and params, and run nothing",
                           description="Read the labels CSV, decode every image and check classes, duplicates "
                           "and the split, reporting every problem at once by CSV line: what `automl run` does "
                           "before it starts.", formatter_class=_Formatter, epilog=_examples("check"))
    _common(check)
    _data(check)
    serve = sub.add_parser("serve", help="register the pipeline as a Prefect deployment with a schedule and "
                           "run its scheduled runs (needs a Prefect server: see README)",
                           formatter_class=_Formatter, epilog=_examples("serve"))
    _common(serve)
    serve.add_argument("--cron", help='schedule, e.g. "0 2 * * *" (every night at 02:00); none: runs only on demand')
    serve.add_argument("--timezone", default="UTC", help='the time zone --cron is read in (IANA name, e.g. '
                       '"Europe/Berlin")')
    serve.add_argument("--name", default="automl", help="deployment name (runs: prefect deployment run "
                       "automl-pipeline/NAME)")
    stage = sub.add_parser("stage", help="run one pipeline stage (what dvc.yaml calls)",
                           formatter_class=_Formatter, epilog=_examples("stage"))
    stage.add_argument("name", choices=list(STAGES), help="the stage to run")
    _common(stage)
    params = sub.add_parser("params", help="list every param with its default, its value here and its meaning",
                            formatter_class=_Formatter, epilog=_examples("params"))
    _common(params)
    params.add_argument("--yaml", action="store_true", help="print a commented params.yaml instead")
    predict = sub.add_parser("predict", help="print the label and probability of each image",
                             formatter_class=_Formatter, epilog=_examples("predict"))
    predict.add_argument("model", help="an export folder (paths.export, e.g. exported/) or an MLflow URI such as "
                         "models:/automl-image-classifier@champion")
    predict.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, or folders of images")
    predict.add_argument("--json", action="store_true", help="one JSON object per line")
    predict.add_argument("--output", metavar="FILE", help="write the predictions to FILE instead: CSV (path, label, "
                         "probability), or JSON lines when FILE ends in .json or .jsonl")
    _common(predict)
    report = sub.add_parser("report", help="draw the report of a run again from what MLflow keeps of it, "
                            "into <paths.reports>/RUN_ID/", formatter_class=_Formatter, epilog=_examples("report"))
    report.add_argument("run_id", help="the MLflow parent run id (printed at the end of automl run)")
    _common(report)
    return parser


def _examples(command: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[command])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default=PARAMS_FILE, help="parameters file (the defaults apply when params.yaml "
                   "is absent; another file must exist)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter, e.g. --set search.time_limit=120 (repeatable)")
    p.add_argument("--debug", action="store_true", help="show the traceback of errors too (for a bug report)")


def _data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", help="labels CSV of your own data (a header row; first column file name, second label)")
    p.add_argument("--images", help="folder of your own images (paths in the CSV are relative to it)")


def main(argv: list[str] | None = None) -> int:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except BrokenPipeError:  # `automl params | head -1`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(args: argparse.Namespace) -> int:
    try:
        overrides = parse_set(args.overrides)
        if getattr(args, "csv", None) or getattr(args, "images", None):
            if not (args.csv and args.images):
                raise AutoMLError("--csv and --images go together: the CSV names files inside the images folder.")
            overrides.update({"data.csv": args.csv, "data.images": args.images, "data.source": ""})
        if args.params != PARAMS_FILE and not Path(args.params).is_file():
            raise AutoMLError(f"{args.params}: params file not found (named by --params).")
        params = load_params(args.params, overrides, PipelineParams)
        if args.command in COMMANDS:
            return COMMANDS[args.command](args, params)
        if args.command == "stage":
            from tasks.stages import run_stage

            print(json.dumps(run_stage(args.name, params), indent=1, default=str))
            return 0
        if args.command == "serve":
            from flows.pipeline import serve

            serve(params, args.name, args.cron, args.timezone)
            return 0
        return _run(args, params)
    except (AutoMLError, OSError) as exc:
        if not users_to_fix(exc):
            raise
        if args.debug:
            traceback.print_exc()
        print(f"automl: error: {_message(exc)}", file=sys.stderr)
        return 2


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError):  # the disk: full, over quota or read-only
        return (f"{exc.filename or 'a file'}: {exc.strerror}. Free space (or make it writable), then run the same "
                "command with --resume: the candidates trained so far are kept.")
    return str(exc)


def _run(args: argparse.Namespace, params: PipelineParams) -> int:
    """The pipeline, its console copied to ``<paths.work>/logs/``, then moved next to its report."""
    with run_log(Path(params.paths.work, "logs")) as log:
        from automl.session import check_params
        from flows.pipeline import run_pipeline
        from flows.runners import task_runner

        check_params(params)  # no CUDA for train.device=cuda, unknown operations: before any work
        if not params.data.source or Path(params.data.csv).exists():  # else ingest writes the embedded set
            _checked(params, quiet=args.quiet)
        task_runner(params)  # a runner that cannot start (prefect-dask missing) fails before any work
        if params.search.warm_start:  # an earlier run that cannot be found is said before any work
            from tasks.tracking import tracking_uri
            from tasks.warm import warm_roots

            if not warm_roots(params.search.warm_start, params.search.warm_start_top, tracking_uri(params),
                              params.tracking.registered_model):
                print(f"search.warm_start={params.search.warm_start}: no champion of "
                      f"{params.tracking.registered_model} yet; starting from the seed network", file=sys.stderr)
        with nullcontext() if args.debug else quiet_expected_errors():
            result = run_pipeline(params, quiet=args.quiet, resume=args.resume)
        _summary(result, params)
    if "folder" in result["report"]:
        log = Path(shutil.move(log, Path(result["report"]["folder"], "run.log")))
    print(f"Log: {log}")
    return 0


def _checked(params: PipelineParams, quiet: bool) -> CheckedDataset:
    """The data check before any work, its notes (duplicates dropped) on the console."""
    from automl.data.images import plain
    from automl.report.progress import bar
    from tasks.data import check_user_data

    checked = check_user_data(params, plain if quiet else bar)
    for note in checked.notes[:MAX_NOTES]:
        print(f"{checked.csv}: {note}", file=sys.stderr)
    if len(checked.notes) > MAX_NOTES:
        print(f"{checked.csv}: ... and {len(checked.notes) - MAX_NOTES} more duplicates dropped", file=sys.stderr)
    return checked


MAX_NOTES = 10


def _check(args: argparse.Namespace, params: PipelineParams) -> int:
    from automl.session import check_params
    from tasks.data import ingest

    check_params(params)
    if params.data.source and not Path(params.data.csv).exists():
        ingest.fn(params)
    checked = _checked(params, quiet=False)
    sizes = {c: 0 for c in checked.classes}
    for row in checked.rows:
        sizes[row.label] += 1
    print(f"{checked.csv}: {len(checked.rows):,} images in {len(sizes)} classes (smallest {min(sizes.values())}, "
          f"largest {max(sizes.values())}), every image readable; params valid. Nothing to fix.")
    return 0


def _params(args: argparse.Namespace, params: PipelineParams) -> int:
    from flows.params_doc import params_yaml, table

    if args.yaml:
        print(params_yaml(params), end="")
        return 0
    for key, default, value, meaning in table(params):
        differs = f" (default {default!r})" if value != default else ""
        print(f"{key} = {value!r}{differs}\n    {meaning}")
    return 0


def _predict(args: argparse.Namespace, params: PipelineParams) -> int:
    """Lines on stdout as they come (tab-separated, or JSON with --json); with --output, one file written
    when all are done: CSV, or JSON lines when its name ends in .json or .jsonl."""
    from automl.export.predict import ExportedModel, image_files
    from automl.fileio import write_csv, write_text
    from tasks.registry import model_folder

    model = ExportedModel(model_folder(args.model, params))
    rows = []
    for found in model.predict_files(image_files(args.inputs)):
        row = {"path": str(found.path), "label": found.label, "probability": round(found.probability, 6)}
        if args.output:
            rows.append(row)
        elif args.json:
            print(json.dumps(row))
        else:
            print(f"{found.path}\t{found.label}\t{found.probability:.4f}")
    if args.output:
        if Path(args.output).suffix in (".json", ".jsonl"):
            write_text(args.output, "".join(json.dumps(row) + "\n" for row in rows))
        else:
            write_csv(args.output, ["path", "label", "probability"], rows)
        print(f"{len(rows)} predictions written to {args.output}")
    return 0


def _report(args: argparse.Namespace, params: PipelineParams) -> int:
    from tasks.report import regenerate

    print(f"Report: {regenerate(params, args.run_id)['html']}")
    return 0


COMMANDS = {"check": _check, "params": _params, "predict": _predict, "report": _report}


def _summary(result: dict, params: PipelineParams) -> None:
    metrics, exported = result["metrics"], result["export"]
    print(f"\nTest accuracy: {metrics['test_accuracy']:.4f} on {metrics['test_size']} images "
          f"(best search val accuracy {metrics['search_best_val_accuracy']:.4f}, "
          f"{metrics['n_candidates']} candidate(s))")
    print(f"Exported: {Path(exported['torchscript']).parent}/ (TorchScript, ONNX, labels.json)")
    print(f"MLflow model: {exported['model_uri']} (parent run {exported['run_id']})")
    print(f"Report: {result['report'].get('html') or 'not written (' + result['report']['error'] + ')'}")
    if registered := exported.get("registered"):
        print(f"Registered: {registered['uri']} (version {registered['version']}: {registered['reason']})")
    from tasks.tracking import tracking_uri

    print(f"Browse runs: {browse_command(tracking_uri(params))}")


def browse_command(uri: str) -> str:
    """Where to look at the runs: the server's address, or the ``mlflow ui`` command for a local store
    (the URI as given, without any password it may carry)."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --workers 1"


if __name__ == "__main__":
    sys.exit(main())
