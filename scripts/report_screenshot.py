"""Draw ``docs/report.png``, the README's picture of a run report: its summary and main pictures on
one page, by matplotlib from the files the report itself wrote.

    python scripts/report_screenshot.py reports/<run id> docs/report.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def screenshot(report: Path, out: Path) -> None:
    data = json.loads((report / "report_data.json").read_text())
    fig = plt.figure(figsize=(12, 11))
    grid = fig.add_gridspec(3, 2, height_ratios=[0.9, 1.1, 1.0])
    summary = "   ".join(f"{k}: {v:.4f}" if isinstance(v, float) and v <= 1 else f"{k}: {v}"
                          for k, v in data["meta"]["summary"].items() if k in ("test accuracy", "candidates",
                                                                                 "best candidate"))
    fig.suptitle(f"automl run {data['meta']['run_id']}\n{summary}", fontsize=11)
    for spot, name in ((grid[0, 0], "trajectory"), (grid[0, 1], "confusion"), (grid[1, 0], "lineage"),
                       (grid[1, 1], "per_class"), (grid[2, :], "misclassified")):
        ax = fig.add_subplot(spot)
        ax.imshow(plt.imread(report / f"{name}.png"))
        ax.set_axis_off()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)


if __name__ == "__main__":
    screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
