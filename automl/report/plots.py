"""The report's pictures, drawn with matplotlib (no graphviz needed) from plain data.

Each function takes what ``automl.report.render`` collected (records as dicts, a graph as its dict, arrays)
and returns a figure; the caller saves it. Nothing here reads files or knows about MLflow.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from automl.search.records import Status  # noqa: E402

LAYER_COLOURS = {"conv": "#9ecae1", "batchnorm": "#e0e0e0", "relu": "#f0f0f0", "maxpool": "#fdd0a2",
                 "global_avg_pool": "#fdae6b", "dropout": "#f0f0f0", "dense": "#a1d99b", "add": "#dadaeb",
                 "concat": "#bcbddc", "softmax": "#fcbba1"}


def trajectory(points: list[dict[str, Any]]) -> Figure:
    """Validation accuracy of each candidate against the time it finished (its place in the order of
    finishing when the times are not known), the best-so-far line, and failed candidates as red crosses
    on the x axis (``points``: ``automl.report.render.trajectory``)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    x = "seconds" if all(p["seconds"] is not None for p in points) else "finished"
    ok = [p for p in points if not p.get("failure")]
    failed = [p for p in points if p.get("failure")]
    if ok:
        xs = [p[x] for p in ok]
        ax.scatter(xs, [p["val_accuracy"] for p in ok], s=28, zorder=3, label="candidate")
        ax.step(xs, [p["best_so_far"] for p in ok], where="post", color="black", lw=1.5, label="best so far")
        for p, at in zip(ok, xs):
            ax.annotate(f"#{p['candidate']}", (at, p["val_accuracy"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    if failed:
        ax.scatter([p[x] for p in failed], [0.0] * len(failed), marker="x", color="red", s=50, zorder=4,
                   label="failed")
    ax.set_xlabel("seconds since the search started" if x == "seconds" else "candidates finished")
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    if ok or failed:
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Search trajectory")
    fig.tight_layout()
    return fig


def lineage(records: list[dict[str, Any]]) -> Figure:
    """The tree of candidates: each child under its parent, the edge labelled with the morphs that made
    it, nodes coloured by validation accuracy (grey: failed); a warm start's roots say where they came from."""
    by_id = {r["id"]: r for r in records}
    depth: dict[int, int] = {}
    for r in sorted(records, key=lambda r: r["id"]):  # a parent always has a smaller id
        depth[r["id"]] = depth.get(r["parent_id"], -1) + 1 if r.get("parent_id") in by_id else 0
    layers: dict[int, list[int]] = {}
    for cid in sorted(depth):
        layers.setdefault(depth[cid], []).append(cid)
    width = max(len(v) for v in layers.values()) if layers else 1
    pos = {cid: ((i + 1) / (len(ids) + 1) * width, -d) for d, ids in layers.items() for i, cid in enumerate(ids)}
    fig, ax = plt.subplots(figsize=(min(18.0, max(7.0, 3 + 0.9 * width)), 1.5 + 1.1 * len(layers)))
    label_edges = len(records) <= 40
    for r in records:
        parent = r.get("parent_id")
        if parent in pos:
            (x0, y0), (x1, y1) = pos[parent], pos[r["id"]]
            ax.annotate("", (x1, y1 + 0.12), (x0, y0 - 0.12), arrowprops={"arrowstyle": "->", "color": "#888"})
            if label_edges and r.get("operation"):
                ax.text((x0 + x1) / 2, (y0 + y1) / 2, _short_ops(r["operation"]), fontsize=6, ha="center",
                        color="#555", bbox={"fc": "white", "ec": "none", "pad": 0.5})
    cmap = plt.get_cmap("viridis")
    for cid, (x, y) in pos.items():
        r = by_id[cid]
        acc = r.get("val_accuracy")
        colour = cmap(acc) if r["status"] == Status.COMPLETE.value and acc is not None else "#bbbbbb"
        ax.scatter([x], [y], s=420, color=colour, edgecolors="black", zorder=3)
        ax.text(x, y, f"#{cid}", ha="center", va="center", fontsize=7, zorder=4,
                color="white" if acc is not None and acc < 0.6 else "black")
        if r.get("origin"):  # a warm start's root: the earlier run's candidate it is
            ax.text(x, y + 0.3, f"from {r['origin']}", ha="center", fontsize=6, color="#555")
    ax.set_axis_off()
    ax.set_title("Lineage: which parent, which morphs (colour: validation accuracy)", fontsize=10)
    fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1)), ax=ax, fraction=0.02, pad=0.01)
    fig.tight_layout()
    return fig


def _short_ops(operation: str) -> str:
    ops = operation.split("+")
    return "+".join(ops) if len(ops) <= 2 else f"{'+'.join(ops[:2])}+{len(ops) - 2} more"


def architecture(graph: dict[str, Any]) -> Figure:
    """The network as a column of layer boxes, top to bottom; inputs that are not the layer just above
    (skip connections) are drawn as arcs on the right."""
    layers = graph["layers"]
    row = {0: 0}
    fig_h = 0.42 * (len(layers) + 1) + 0.6
    fig, ax = plt.subplots(figsize=(6.5, fig_h))
    _box(ax, 0, f"input {tuple(graph['input_shape'])}", "#ffffff")
    for i, layer in enumerate(layers, start=1):
        row[layer["id"]] = i
        _box(ax, i, _layer_label(layer), LAYER_COLOURS.get(layer["type"], "#ffffff"))
    skips = 0
    for layer in layers:
        here = row[layer["id"]]
        for source in layer["inputs"]:
            if row[source] == here - 1:
                ax.annotate("", (0, -here + 0.3), (0, -here + 0.7), arrowprops={"arrowstyle": "->", "lw": 0.8})
            else:
                skips += 1
                ax.annotate("", (1.5, -here), (1.5, -row[source]), arrowprops={
                    "arrowstyle": "->", "color": "#d62728", "lw": 1.0,
                    "connectionstyle": f"arc3,rad={-0.25 - 0.05 * (skips % 4)}"})
    ax.set_xlim(-2.2, 2.8)
    ax.set_ylim(-len(layers) - 0.7, 0.7)
    ax.set_axis_off()
    ax.set_title(f"Final architecture ({skips} skip connection{'s' if skips != 1 else ''})", fontsize=10)
    fig.tight_layout()
    return fig


def _box(ax: Any, i: int, text: str, colour: str) -> None:
    ax.add_patch(plt.Rectangle((-1.5, -i - 0.3), 3.0, 0.6, fc=colour, ec="black", lw=0.6))
    ax.text(0, -i, text, ha="center", va="center", fontsize=7)


def _layer_label(layer: dict[str, Any]) -> str:
    p = layer["params"]
    if layer["type"] == "conv":
        return f"conv {p['kernel_size']}x{p['kernel_size']}, {p['filters']} filters"
    if layer["type"] == "dense":
        return f"dense {p['units']}"
    if layer["type"] == "dropout":
        return f"dropout {p.get('rate', '')}"
    return {"global_avg_pool": "global average pool", "maxpool": "max pool 2x2"}.get(layer["type"], layer["type"])


def confusion(matrix: np.ndarray, classes: list[str]) -> Figure:
    """Rows: true class, columns: predicted class; each cell's count, shaded by the row's share."""
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * n, 1.0 + 0.5 * n))
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), classes, rotation=90 if n > 12 else 0, fontsize=7)
    ax.set_yticks(range(n), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test split)")
    fig.tight_layout()
    return fig


def per_class(accuracy: dict[str, float]) -> Figure:
    names = list(accuracy)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(names) + 1.5), 3))
    ax.bar(range(len(names)), [accuracy[n] for n in names], color="#6baed6")
    ax.set_xticks(range(len(names)), names, rotation=90 if len(names) > 12 else 0, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy per class (test split)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def misclassified(examples: list[dict[str, Any]], columns: int = 8) -> Figure:
    """A grid of test images the model got wrong, each titled true -> predicted (probability)."""
    rows = max(1, -(-len(examples) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 0.4 + 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, ex in zip(axes.flat, examples):
        if ex["image"] is not None:  # None: the file could not be read again
            img = np.asarray(ex["image"], dtype=np.uint8)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(f"{ex['true']} -> {ex['predicted']}\n({ex['probability']:.2f})", fontsize=7, color="#b30000")
    if not examples:
        axes.flat[0].text(0.5, 0.5, "no misclassified test image", ha="center", va="center")
    fig.suptitle("Misclassified test images: true -> predicted (probability)", fontsize=9)
    fig.tight_layout()
    return fig
