"""The run report: what the search tried, how it went, and how the final model does on the test split.

``report_data`` gathers everything the report shows into one JSON-able dict (so a report can be drawn
again later, or on another machine, from that dict alone); ``render`` writes the pictures as PNG files
and ``report.html``, a single self-contained page (pictures embedded) that opens from disk.
"""

from __future__ import annotations

import base64
import dataclasses
import html
from pathlib import Path
from typing import Any, Callable

import numpy as np

from automl.errors import DataError
from automl.fileio import atomic_path, write_text
from automl.report import plots as report_plots
from automl.search.records import CandidateRecord, Status
from automl.training.trainer import class_accuracies

MAX_MISCLASSIFIED = 24
PICTURES = ("trajectory", "lineage", "architecture", "confusion", "per_class", "misclassified")
TABLE_COLUMNS = [("id", "id"), ("parent", "parent_id"), ("warm start from", "origin"), ("operation", "operation"),
                 ("status", "status"),
                 ("params", "n_params"), ("memory MB", "estimated_memory_mb"), ("epochs", "epochs"),
                 ("val accuracy", "val_accuracy"), ("UCB", "ucb"), ("GP mean", "gp_mean"), ("GP std", "gp_std"),
                 ("error", "error")]


def report_data(records: list[CandidateRecord], final_graph: dict[str, Any], classes: list[Any],
                y_true: np.ndarray, probabilities: np.ndarray, image: Callable[[int], np.ndarray],
                meta: dict[str, Any]) -> dict[str, Any]:
    """``y_true`` (N,) class indices and ``probabilities`` (N, K) on the test split; ``image(i)``: the
    raw i-th test image (read for misclassified ones only); ``meta``: run id, params, a summary."""
    predicted = probabilities.argmax(1)
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(matrix, (y_true, predicted), 1)
    wrong = np.flatnonzero(predicted != y_true)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:MAX_MISCLASSIFIED]
    return {
        "meta": meta,
        "classes": [str(c) for c in classes],
        "candidates": [candidate_row(r) for r in records],
        "final_graph": final_graph,
        "confusion": matrix.tolist(),
        "per_class_accuracy": class_accuracies(y_true, predicted, [str(c) for c in classes]),
        "misclassified": [{"index": int(i), "true": str(classes[y_true[i]]), "predicted": str(classes[predicted[i]]),
                           "probability": round(float(probabilities[i, predicted[i]]), 4),
                           "image": _image_or_none(image, int(i))} for i in wrong],
    }


def _image_or_none(image: Callable[[int], np.ndarray], i: int) -> list | None:
    """The raw test image, or None when it cannot be read any more (deleted since the split): the
    report shows a blank tile rather than cost the run its model."""
    try:
        return np.asarray(image(i)).tolist()
    except DataError:
        return None


def candidate_row(record: CandidateRecord) -> dict[str, Any]:
    """A candidate's record as the report document keeps it (JSON, redrawn later from MLflow): the
    table's columns and the trajectory's times."""
    return {"id": record.id, "parent_id": record.parent_id, "operation": record.operation,
            "origin": origin_label(record), "status": record.status.value, "n_params": record.n_params,
            "architecture": record.architecture,
            "epochs": record.epochs, "val_accuracy": record.val_accuracy, "finished_at": record.finished_at,
            "wall": record.timing.get("wall"), "error": record.first_error_line(),
            **dataclasses.asdict(record.reasoning)}


def origin_label(record: CandidateRecord) -> str | None:
    """A warm-started root's origin, e.g. ``#4 of 1f2e3d4c`` (an MLflow run id is cut to 8 characters)."""
    if record.origin is None:
        return None
    source = record.origin.source
    return f"#{record.origin.candidate} of {source[:8] if len(source) == 32 and source.isalnum() else source}" + \
        (" (new head)" if record.origin.head_reset else "")


def trajectory(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished candidates in the order they finished, numbered (``finished``), with the seconds since
    the search started (the earliest finish minus its wall time, as well as the records tell; None for a
    store without its clock files, which is then in id order), validation accuracy, best so far."""
    done = sorted((c for c in candidates if c["status"] != Status.RUNNING.value),
                  key=lambda c: (c.get("finished_at") or 0.0, c["id"]))
    timed = [c for c in done if c.get("finished_at")]
    origin = min((c["finished_at"] - (c["wall"] or 0.0) for c in timed), default=0.0)
    rows, best = [], 0.0
    for n, c in enumerate(done, 1):
        seconds = round(c["finished_at"] - origin, 2) if c.get("finished_at") else None
        if c["status"] == Status.COMPLETE.value and c.get("val_accuracy") is not None:
            best = max(best, c["val_accuracy"])
            rows.append({"finished": n, "candidate": c["id"], "seconds": seconds,
                         "val_accuracy": c["val_accuracy"], "best_so_far": best})
        elif c["status"] == Status.FAILED.value:
            rows.append({"finished": n, "candidate": c["id"], "seconds": seconds, "failure": True})
    return rows


def render(data: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``<name>.png`` for each of ``PICTURES`` and ``report.html`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "trajectory": lambda: report_plots.trajectory(trajectory(data["candidates"])),
        "lineage": lambda: report_plots.lineage(data["candidates"]),
        "architecture": lambda: report_plots.architecture(data["final_graph"]),
        "confusion": lambda: report_plots.confusion(np.asarray(data["confusion"]), data["classes"]),
        "per_class": lambda: report_plots.per_class(data["per_class_accuracy"]),
        "misclassified": lambda: report_plots.misclassified(data["misclassified"]),
    }
    import matplotlib.pyplot as plt

    with plt.rc_context({"text.parse_math": False}):  # a label like "$x$" is text, not mathtext to parse
        paths = {name: _save(make(), out / f"{name}.png") for name, make in figures.items()}
    paths["html"] = out / "report.html"
    write_text(paths["html"], _html(data, paths))
    return paths


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def _img(path: Path, alt: str) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{alt}" src="data:image/png;base64,{encoded}">'


SECTIONS = [  # (id, title, picture, what it shows)
    ("trajectory", "Search trajectory", "trajectory",
     "Validation accuracy of each candidate when it finished; the line is the best so far; red crosses are "
     "failed candidates."),
    ("lineage", "Lineage of candidates", "lineage",
     "Each candidate under the parent whose trained weights it inherited, the edge labelled with the morphs."),
    ("architecture", "Final architecture", "architecture",
     "The network the final model trained, layer by layer; red arcs are skip connections."),
    ("confusion", "Confusion matrix", "confusion", "Test split: rows are the true class, columns the prediction."),
    ("per-class", "Accuracy per class", "per_class", "Test split accuracy of each class."),
    ("misclassified", "Misclassified test images", "misclassified",
     "The test images the model got wrong with the most confidence first."),
]


def _html(data: dict[str, Any], pictures: dict[str, Path]) -> str:
    meta = data["meta"]
    facts = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                    for k, v in meta.get("summary", {}).items())
    parts = [f"<h1>automl run {html.escape(str(meta.get('run_id', '')))}</h1>", f"<table class=facts>{facts}</table>"]
    for anchor, title, picture, caption in SECTIONS:
        parts.append(f'<section id="{anchor}"><h2>{title}</h2><p>{caption}</p>{_img(pictures[picture], title)}'
                     "</section>")
    header = "".join(f"<th>{name}</th>" for name, _ in TABLE_COLUMNS)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c.get(key)))}</td>" for _, key in TABLE_COLUMNS)
                   + "</tr>" for c in data["candidates"])
    parts.append(f'<section id="candidates"><h2>Candidates</h2><p>Every candidate the search trained, with what the '
                 f'searcher expected of it (UCB, GP mean and std) and what it got.</p><table class=candidates>'
                 f"<thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table></section>")
    params = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>"
                     for k, v in sorted(meta.get("params", {}).items()))
    parts.append(f'<section id="params"><h2>Params</h2><table class=facts>{params}</table></section>')
    title = f"automl report {html.escape(str(meta.get('run_id')))}"
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}img{max-width:100%}"
         "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
         "table.candidates td{text-align:right}section{margin-top:2em}")
