"""Reading the user's labels CSV, in the user's terms: every problem carries the CSV's own line number.

Why a module of its own: a spreadsheet export is where most bad input starts (another encoding, a byte
order mark, no header row, a stray binary file, a runaway quoted field). Each of those used to end in a
traceback or, worse, in silence (a missing header cost the first image). Here each becomes a
``Problem`` naming its line, and the caller reports them all at once.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from automl.errors import DataError

MAX_SHOWN = 20  # problems listed one by one; the rest are counted by kind
MAX_FIELD = 4096  # characters in a file name or label; csv's own limit (128 kB) fails with a traceback
BINARY_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"PK\x03\x04", b"RIFF")


@dataclass(frozen=True)
class Row:
    """One data row of the user's CSV: its line number there, the file name and the label."""

    line: int
    name: str
    label: str


@dataclass(frozen=True)
class Problem:
    """Something wrong with the user's data; ``line`` is the CSV's line (None: the dataset as a whole),
    ``kind`` groups problems in the summary ("file not found", "duplicate", ...)."""

    line: int | None
    kind: str
    message: str


def read_text(path: Path) -> str:
    """The CSV's text: UTF-8 with or without a byte order mark; anything else is an error naming the
    line and byte where decoding failed."""
    if not path.is_file():
        raise DataError(f"{path}: labels CSV not found. Pass the path of a CSV with a file-name and a label column.")
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path}: line 1: the CSV is UTF-16; save it as UTF-8 (in a spreadsheet: 'CSV UTF-8').")
    if data.startswith(BINARY_MAGIC):
        raise DataError(f"{path}: this is a binary file (an image or archive?), not a labels CSV. Pass the CSV "
                        "that lists the images: a header row, then one 'file name,label' row per image.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not UTF-8 (byte 0x{data[exc.start]:02x}); save the CSV as UTF-8 "
                        "(in a spreadsheet: 'CSV UTF-8'), e.g. iconv -f latin1 -t utf-8.") from None


def parse_rows(path: Path) -> tuple[list[tuple[int, list[str]]], list[Problem]]:
    """(line, cells) of every non-blank row; a row csv cannot parse ends the reading with a problem."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    rows: list[tuple[int, list[str]]] = []
    problems: list[Problem] = []
    line = 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                rows.append((line, cells))
            line = reader.line_num + 1
    except csv.Error as exc:
        why = (f"a field longer than {csv.field_size_limit():,} characters (an unclosed quote?)"
               if "field limit" in str(exc) else str(exc))
        problems.append(Problem(line, "unreadable CSV", f"{why}; the CSV cannot be read from here on"))
    return rows, problems


def column_index(path: Path, header: list[str], wanted: str, default: int, what: str) -> int:
    if wanted:
        if wanted not in header:
            raise DataError(f"{path}: line 1: no {what} column named {wanted!r}; the header has {header}.")
        return header.index(wanted)
    if len(header) <= default:
        raise DataError(f"{path}: line 1: needs a {what} column (column {default + 1}); the header has {header}. "
                        "Give the CSV a file-name column and a label column.")
    return default


def looks_like_data(first: Sequence[str], images: Path | None) -> bool:
    """Whether the first row names an image (so the CSV has no header row and would lose a row)."""
    name = first[0].strip() if first else ""
    if not name:
        return False
    if Path(name).suffix.lower() in Image.registered_extensions():
        return True
    return images is not None and (images / name).is_file()


def read_rows(csv_path: str | Path, filename_column: str = "", label_column: str = "",
              images: Path | None = None) -> tuple[list[Row], list[Problem]]:
    """The CSV's data rows and every row-level problem. Errors that leave nothing to check further
    (no file, not text, no usable header) raise ``DataError`` at once."""
    path = Path(csv_path)
    parsed, problems = parse_rows(path)
    if not parsed:
        raise DataError(f"{path}: the CSV is empty; it needs a header row and one row per image.")
    first_line, first = parsed[0]
    if not (filename_column or label_column) and looks_like_data(first, images):
        raise DataError(f"{path}: line {first_line}: {first[0].strip()!r} names an image, so the CSV has no header "
                        "row and this image would be lost. Add a first line such as: filename,label")
    header = [h.strip() for h in first]
    file_idx = column_index(path, header, filename_column, 0, "file-name")
    label_idx = column_index(path, header, label_column, 1, "label")
    rows = []
    for line, cells in parsed[1:]:
        row, problem = _row(line, cells, file_idx, label_idx)
        if problem:
            problems.append(problem)
        elif row:
            rows.append(row)
    return rows, problems


def _row(line: int, cells: list[str], file_idx: int, label_idx: int) -> tuple[Row | None, Problem | None]:
    if len(cells) <= max(file_idx, label_idx):
        return None, Problem(line, "too few columns", f"expected at least {max(file_idx, label_idx) + 1} columns")
    name, label = cells[file_idx].strip(), cells[label_idx].strip()
    if not name or not label:
        what = "file name" if not name else "label"
        return None, Problem(line, f"empty {what}", f"empty {what}")
    longest = max(len(name), len(label))
    if longest > MAX_FIELD:
        return None, Problem(line, "field too long", f"a field of {longest:,} characters; a file name or label "
                             f"has at most {MAX_FIELD:,}")
    if "\x00" in name or "\x00" in label:
        return None, Problem(line, "NUL byte", "a NUL byte in the file name or label")
    return Row(line, name, label), None


def read_labels_csv(csv_file_path: str | Path, filename_column: str = "",
                    label_column: str = "") -> tuple[list[str], list[str]]:
    """(file names, labels) from a CSV with a header row; every bad row is reported in one error."""
    path = Path(csv_file_path)
    rows, problems = read_rows(path, filename_column, label_column)
    raise_problems(path, problems)
    if not rows:
        raise DataError(f"{path}: no data rows; add one row per image (file name, label).")
    return [r.name for r in rows], [r.label for r in rows]


def raise_problems(path: Path, problems: Sequence[Problem], advice: str = "fix them all, then run again") -> None:
    """One ``DataError`` listing every problem by line (the first ``MAX_SHOWN``, then counts by kind)."""
    if not problems:
        return
    ordered = sorted(problems, key=lambda p: (p.line is not None, p.line or 0))
    shown = [f"line {p.line}: {p.message}" if p.line is not None else p.message for p in ordered[:MAX_SHOWN]]
    rest = ordered[MAX_SHOWN:]
    if rest:
        kinds: dict[str, int] = {}
        for p in rest:
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        shown.append(f"... and {len(rest)} more: " + ", ".join(f"{n} {kind}" for kind, n in kinds.items()))
    rows = len({p.line for p in problems if p.line is not None})
    where = f" in {rows} row(s)" if rows else ""
    raise DataError(f"{path}: {len(problems)} problem(s){where}; {advice}:\n  " + "\n  ".join(shown))
