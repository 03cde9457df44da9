"""One pass over the user's dataset before any work starts, reporting every problem at once.

Why: a problem found inside the pipeline costs the user a Prefect traceback, 10-20 s of startup and
one fix per run; a duplicate image that lands in both the training and the test split silently
inflates the test accuracy. This pass reads the CSV, opens and decodes every image (within the pixel
limit), finds duplicate files and images (same bytes under two names), conflicting labels, and classes
too small for the split, and names each problem by the user's CSV line. ``automl check`` runs only it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from automl.data.images import Progress, open_checked, plain, resolve_image_path
from automl.data.labels import Problem, Row, raise_problems, read_rows
from automl.errors import DataError

DUPLICATES = ("error", "drop")  # data.duplicates: a duplicate row or image is an error, or dropped with a note


@dataclass(frozen=True)
class CheckedDataset:
    """The rows a run uses (duplicates dropped when allowed) and what was dropped, in the user's terms."""

    csv: Path
    images: Path
    rows: list[Row]
    notes: list[str]

    @property
    def classes(self) -> list[str]:
        return sorted({r.label for r in self.rows})


def check_dataset(csv_path: str | Path, images_path: str | Path, *, filename_column: str = "",
                  label_column: str = "", fractions: Sequence[float] = (0.2, 0.1), duplicates: str = "error",
                  progress: Progress = plain) -> CheckedDataset:
    """Check everything about a labels CSV and its image folder; raise one ``DataError`` naming every
    problem by line, or return the rows to use. ``fractions``: the held-out splits (test, validation)
    every class must have an image for."""
    if duplicates not in DUPLICATES:
        raise DataError(f"data.duplicates must be one of {', '.join(DUPLICATES)}; got {duplicates!r}.")
    csv_file, folder = Path(csv_path), Path(images_path)
    if not folder.is_dir():
        raise DataError(f"{folder}: images folder not found (named by data.images, for {csv_file}).")
    rows, problems = read_rows(csv_file, filename_column, label_column, folder)
    if not rows and not problems:
        raise DataError(f"{csv_file}: no data rows; add one row per image (file name, label).")
    digests: dict[int, tuple[str, Path]] = {}
    for row in progress(rows, f"checking {csv_file.name}", "images"):
        found = _check_image(folder, row)
        if isinstance(found, Problem):
            problems.append(found)
        else:
            digests[row.line] = found
    kept, repeated, notes = _deduplicate([r for r in rows if r.line in digests], digests, duplicates)
    problems += repeated
    if not problems:
        problems += _class_problems(kept, fractions)
    raise_problems(csv_file, problems)
    return CheckedDataset(csv_file, folder, kept, notes)


def _check_image(folder: Path, row: Row) -> tuple[str, Path] | Problem:
    """The digest of the row's image bytes and its resolved path, or the problem that stops it being used."""
    try:
        path = resolve_image_path(folder, row.name)
        if not path.is_file():
            return Problem(row.line, "file not found", f"{row.name}: file not found in {folder}")
        data = path.read_bytes()
        open_checked(path, data)
    except DataError as exc:
        return Problem(row.line, "unreadable image", str(exc))
    except OSError as exc:  # permission denied, ...
        return Problem(row.line, "unreadable file", f"{row.name}: cannot be read ({exc.strerror or exc})")
    return hashlib.sha256(data).hexdigest(), path


def _deduplicate(rows: list[Row], digests: dict[int, tuple[str, Path]],
                 policy: str) -> tuple[list[Row], list[Problem], list[str]]:
    """Rows naming the same file, or files with the same bytes: a conflict when their labels differ
    (always an error), a duplicate otherwise (an error, or dropped keeping the first, per ``policy``)."""
    first: dict[str, Row] = {}
    kept: list[Row] = []
    problems: list[Problem] = []
    notes: list[str] = []
    for row in rows:
        digest, path = digests[row.line]
        earlier = first.setdefault(digest, row)
        if earlier is row:
            kept.append(row)
            continue
        same = "the same file as" if digests[earlier.line][1] == path else "the same image as"
        if earlier.label != row.label:
            problems.append(Problem(row.line, "conflicting label", f"{row.name} is {same} line {earlier.line} "
                                    f"but labelled {row.label!r} here and {earlier.label!r} there; keep one label"))
        elif policy == "drop":
            notes.append(f"line {row.line}: {row.name} dropped, {same} line {earlier.line}")
        else:
            problems.append(Problem(row.line, "duplicate", f"{row.name} is {same} line {earlier.line}; remove "
                                    "one (or --set data.duplicates=drop keeps the first)"))
    return kept, problems, notes


def _class_problems(rows: list[Row], fractions: Sequence[float]) -> list[Problem]:
    """Problems of the dataset as a whole: fewer than two classes, or a class with fewer images than
    the stratified split needs (one per split)."""
    counts: dict[str, list[int]] = {}
    for row in rows:
        counts.setdefault(row.label, []).append(row.line)
    if len(counts) < 2:
        return [Problem(None, "one class", f"need at least 2 classes to classify; found {len(counts)} "
                        f"({', '.join(map(repr, counts))}).")]
    need = 1 + sum(1 for f in fractions if f > 0)
    return [Problem(lines[0], "class too small", f"class {label!r} has {len(lines)} image(s) (line(s) "
                    f"{', '.join(map(str, lines[:5]))}); the split needs {need}, one per split: add images or "
                    "remove the class")
            for label, lines in sorted(counts.items()) if len(lines) < need]
