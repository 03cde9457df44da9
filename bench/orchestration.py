"""Orchestration overhead of a pipeline run: the share of the search's wall time that is not training.

    python -m bench.orchestration [--minutes 10] [--image-size 28]

Runs the Prefect flow on the default dataset (MLflow tracking to a temporary SQLite store, a temporary
working folder) and splits the time from calling the flow to the end of the search into: data
preparation (ingest, split, decoding and resizing the images once: work, not overhead) and training
epochs, and the overhead: flow start (Prefect's temporary server included), the MLflow parent run
(creating the tracking database on a first run), per-task overhead (Prefect around each candidate task), MLflow
logging and progress output (callbacks), weight transfer, candidate files, searcher time the training
waited for, and trainer internals (model build, state copies); the rest is epochs of training and
validation. Target: overhead <= 5 % of the wall time.

``--warm-api`` starts this process's Prefect API (the temporary server a first flow call starts, 6-8 s
on 2 cores) before the clock, as it is for runs served by a deployment or against ``PREFECT_API_URL``,
and reports its start apart (``prefect_api_start_seconds``). ``python -m bench --quick`` measures that
way: a fixed start of that size is 7-9 % of a short run by itself, so the quick run could not check the
per-run costs against the target; the full run keeps the temporary server inside its 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS

TARGET = 0.05


def quiet_environment() -> None:
    from flows.cli import QUIET_ENV

    for key, value in {**QUIET_ENV, "PREFECT_LOGGING_LEVEL": "WARNING"}.items():
        os.environ.setdefault(key, value)


def start_api() -> float:
    """Seconds to start this process's Prefect API: with no ``PREFECT_API_URL``, the temporary server
    that every later flow call of the process reuses."""
    from prefect.client.orchestration import get_client

    began = time.time()
    with get_client(sync_client=True) as client:
        client.api_healthcheck()
    return time.time() - began


def run_flow(minutes: float, image_size: int, folder: Path) -> tuple[dict, float, list[dict]]:
    """Run the flow in ``folder``; return its result, the time it was called and the candidate records."""
    quiet_environment()
    from automl.search.store import CandidateStore
    from flows.pipeline import run_pipeline
    from tasks.settings import PipelineParams

    params = PipelineParams().replace(**{
        "search.time_limit": minutes * 60, "preprocess.image_size": image_size, "final_fit.epochs": 1,
        "search.max_candidates": 1000, "data.csv": str(folder / "data/mnist5k/labels.csv"),
        "data.images": str(folder / "data/mnist5k/images"), "paths.work": str(folder / "artifacts"),
        "paths.export": str(folder / "exported"), "tracking.uri": f"sqlite:///{folder / 'mlflow.db'}"})
    called = time.time()
    cwd = os.getcwd()
    os.chdir(folder)  # the embedded dataset is written under ./data
    try:
        result = run_pipeline(params, quiet=True)
    finally:
        os.chdir(cwd)
    records = [r.to_dict() for r in CandidateStore(folder / "artifacts/search").records()]  # with their clock
    return result, called, records


def breakdown(result: dict, called: float, records: list[dict]) -> dict:
    search = result["search"]
    timing = search["timing"]
    total = lambda key: sum(r["timing"].get(key, 0.0) for r in records)  # noqa: E731
    flow = result["timing"]
    flow_start = flow["started_at"] - called
    data = flow["data_seconds"]
    wall = flow_start + data + flow["tracking_start_seconds"] + search["search_seconds"]
    training = total("epochs")
    parts = {
        "flow_start": flow_start,
        "mlflow_parent_run_start": flow["tracking_start_seconds"],
        "per_task_prefect": timing.get("train_batch", 0.0) - total("wall"),
        "callbacks_mlflow_progress": total("callbacks"),
        "weight_transfer": total("inherit"),
        "candidate_files": total("store"),
        "searcher_waited_for": timing.get("searcher_wait", 0.0) + timing.get("tell", 0.0),
        "trainer_internals": total("wall") - training - total("callbacks") - total("inherit") - total("store"),
    }
    parts["other"] = wall - data - training - sum(parts.values())
    return {"wall_seconds": round(wall, 2), "training_seconds": round(training, 2),
            "data_preparation_seconds": round(data, 2),
            "n_candidates": len(records), "searcher_ask_seconds_background": timing.get("searcher_ask", 0.0),
            "overhead_seconds": {k: round(v, 3) for k, v in parts.items()},
            "orchestration_overhead_fraction": round(1 - (training + data) / wall, 4), "target": TARGET}


def measure(minutes: float = 10.0, image_size: int = 28, warm_api: bool = False) -> dict:
    """The breakdown of one flow run; with ``warm_api`` the Prefect API is started before its clock."""
    quiet_environment()
    api = {"prefect_api_start_seconds": round(start_api(), 2)} if warm_api else {}
    with tempfile.TemporaryDirectory() as tmp:
        return dict(breakdown(*run_flow(minutes, image_size, Path(tmp))), minutes=minutes, image_size=image_size,
                    warm_api=warm_api, **api)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--warm-api", action="store_true", help="start the Prefect API before the clock")
    args = parser.parse_args()
    out = measure(args.minutes, args.image_size, args.warm_api)
    print(json.dumps(out, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "orchestration.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
