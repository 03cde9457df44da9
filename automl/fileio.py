"""Atomic file writes: write under a temporary name in the same folder, flush it to disk, then rename.

Why: a crash (or kill -9, or a power cut) must never leave a half-written weights, model or state file
that a later run would load as if complete. ``os.replace`` is atomic on one filesystem; the ``fsync``
of the file and then of its folder makes the new name and its content durable in that order. Files
and folders get the modes the user's umask gives (``tempfile`` would make them 0600/0700, unreadable
to a teammate), and the same content always gives the same bytes (``write_bytes``, ``write_npz``),
so DVC sees nothing changed after a deterministic re-run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from automl.errors import CorruptFileError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync(target.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (and folders on some systems) cannot be synced: durability only
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def serialized(save: Callable[[io.BytesIO], None]) -> bytes:
    """What ``save`` writes into a buffer: torch's savers name the zip's inner folder after the file,
    so saving to a temporary path gives different bytes each time; a buffer gives one name."""
    buffer = io.BytesIO()
    save(buffer)
    return buffer.getvalue()


ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` with a fixed timestamp on every member, so equal arrays give equal bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            with archive.open(zipfile.ZipInfo(f"{name}.npy", ZIP_EPOCH), "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    write_bytes(path, buffer.getvalue())


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    """Rows as a CSV with a header; keys of a row beyond ``fields`` are left out."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read_json(path: str | Path) -> Any:
    """A JSON file this tool wrote; one cut short or damaged is a ``CorruptFileError`` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(path, exc) from None


def atomic_dir(path: str | Path, fill: Callable[[Path], None]) -> None:
    """Build a whole folder under a temporary name with ``fill(tmp)``, then swap it into place. The old
    folder is renamed aside first and deleted only after the new one has its name, so a crash at any
    moment leaves one of them on disk."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    old = None
    try:
        os.chmod(tmp, 0o777 & ~umask())
        fill(tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        _fsync(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not target.exists():
            os.replace(old / target.name, target)  # put the old folder back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
