"""Every performance benchmark with one command; ratios printed next to their targets.

    python -m bench            # about 15 minutes on 2 CPU cores (a 10-minute search included)
    python -m bench --quick    # about 4 minutes: smaller runs of the same measurements (the Prefect
                               # API started before the orchestration run's clock: bench.orchestration)

Writes ``bench/results/latest.json`` (``quick.json`` with ``--quick``, so a quick check never replaces
the full run's figures), keeping the sections other benchmarks wrote there. The accuracy table (search
strategies and an SVC at 2, 5 and 10 minute budgets, hours of compute) is produced by ``python -m
bench.search_strategies``, which also writes it into ``latest.json``; this command copies it from that
benchmark's saved runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench import orchestration, search_strategies, searcher_cost, throughput, warm_start
from bench.common import RESULTS

QUICK = {"throughput": {"epochs": 1, "repeats": 2},
         "orchestration": {"minutes": 2.5, "image_size": 28, "warm_api": True},  # why: bench.orchestration
         "searcher": {"sizes": (10, 50, 100)},
         "warm_start": {"dataset": "digits8x8", "image_size": 8, "parent_epochs": 3, "epochs": 4}}
FULL = {"throughput": {"epochs": 2, "repeats": 3}, "orchestration": {"minutes": 10.0, "image_size": 28},
        "searcher": {"sizes": (10, 50, 100, 200)},
        "warm_start": {"dataset": "mnist5k", "image_size": 16, "parent_epochs": 4, "epochs": 6}}


def check(name: str, value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    return f"{name:36s} {value:8.4f}   target {sign} {target:<6} {'ok' if ok else 'MISSED'}"


def accuracy_table() -> dict | None:
    rows = search_strategies.load_rows()
    return search_strategies.accuracy_section(rows) if rows else None


def write_merged(path: Path, out: dict) -> None:
    """``out`` over what ``path`` holds: the sections other benchmarks write there (``nightly``,
    ``scale``) stay."""
    path.parent.mkdir(exist_ok=True)
    kept = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**kept, **out}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller runs (under 5 minutes)")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    start = time.time()
    out: dict = {"mode": "quick" if args.quick else "full", "date": time.strftime("%Y-%m-%d %H:%M")}
    out["throughput"] = throughput.measure(**cfg["throughput"])
    print(f"throughput done ({time.time() - start:.0f}s)", flush=True)
    out["orchestration"] = orchestration.measure(**cfg["orchestration"])
    print(f"orchestration done ({time.time() - start:.0f}s)", flush=True)
    orch = out["orchestration"]  # its candidates' mean training time is the yardstick of the searcher's
    mean_candidate = orch["training_seconds"] / orch["n_candidates"] if orch["n_candidates"] else None
    out["searcher"] = searcher_cost.measure(cfg["searcher"]["sizes"], mean_candidate)
    print(f"searcher cost done ({time.time() - start:.0f}s)", flush=True)
    out["warm_start"] = warm_start.measure(**cfg["warm_start"])
    out["accuracy"] = accuracy_table()
    out["trainer_throughput_ratio"] = out["throughput"]["trainer_throughput_ratio"]
    out["trainer_flops_fraction"] = out["throughput"]["trainer_flops_fraction"]
    out["orchestration_overhead_fraction"] = out["orchestration"]["orchestration_overhead_fraction"]
    out["searcher_round_fraction_at_100"] = out["searcher"]["searcher_round_fraction_at_100"]
    out["seconds"] = round(time.time() - start, 1)
    path = RESULTS / ("quick.json" if args.quick else "latest.json")
    write_merged(path, out)
    print()
    print(check("trainer throughput / bare loop", out["trainer_throughput_ratio"], throughput.TARGET, True))
    print(check("orchestration overhead fraction", out["orchestration_overhead_fraction"], orchestration.TARGET,
                False))
    print(check("searcher round / candidate (100 obs)", out["searcher_round_fraction_at_100"],
                searcher_cost.TARGET, False))
    t = out["throughput"]
    print(f"{'trainer FLOP/s / float32 matmul peak':36s} {out['trainer_flops_fraction']:8.4f}   "
          f"({t['trainer_gflops']} of {t['matmul_peak_gflops']} GFLOP/s; informative)")
    print("overhead breakdown (s):", json.dumps(out["orchestration"]["overhead_seconds"]))
    if "prefect_api_start_seconds" in out["orchestration"]:
        print(f"Prefect API started before the clock in {out['orchestration']['prefect_api_start_seconds']} s")
    print("searcher round seconds by observations:", json.dumps(out["searcher"]["round_seconds"]))
    print(warm_start.table(out["warm_start"]))
    print(f"\nwrote {path} in {out['seconds']:.0f}s")


if __name__ == "__main__":
    main()
