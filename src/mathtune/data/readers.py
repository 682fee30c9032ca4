"""Read rows from local JSONL / JSON / CSV / Parquet files or directories of them.

Every row comes with a location (`file.jsonl:12`) so a bad line or a missing column is
reported by file and line. Malformed JSONL lines are errors, not silently skipped.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import MathtuneError
from ..files import read_jsonl

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")

Row = dict[str, Any]


def resolve_files(path: Path, split: str | None = None) -> list[Path]:
    """The data files a path names: the file itself, `<dir>/<split>.<ext>` or every data file
    under the directory (sorted)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise MathtuneError(f"data path not found: {path}", "check the path (or unset it to use the Hub)")
    if split:
        for suffix in SUFFIXES:
            if (path / f"{split}{suffix}").is_file():
                return [path / f"{split}{suffix}"]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    if not files:
        raise MathtuneError(f"no data files ({', '.join(SUFFIXES)}) in {path}", "point path at a JSONL/CSV/Parquet file")
    return files


def iter_rows(path: Path) -> Iterator[tuple[str, Row]]:
    """(location, row) for each record of one file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl" or (suffix == ".json" and not _is_whole_json(path)):
        for lineno, rec, err in read_jsonl(path):
            if err:
                raise MathtuneError(f"malformed JSONL in {path} at line {lineno}: {err}", "fix or remove that line")
            yield f"{path.name}:{lineno}", rec  # type: ignore[misc]
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise MathtuneError(f"malformed JSON in {path} at line {e.lineno}: {e.msg}", "fix the file") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise MathtuneError(f"{path} must hold a JSON list of objects", "or use JSONL, one object per line")
        for i, rec in enumerate(data):
            yield f"{path.name}[{i}]", rec
    elif suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            for i, rec in enumerate(csv.DictReader(f), start=2):
                yield f"{path.name}:{i}", dict(rec)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for rec in batch.to_pylist():
                n += 1
                yield f"{path.name}[{n - 1}]", rec
    else:
        raise MathtuneError(f"unsupported data file type {path.suffix!r}: {path}", f"use one of {', '.join(SUFFIXES)}")


def _is_whole_json(path: Path) -> bool:
    """True for a .json file holding one JSON document; False for JSON Lines saved as .json."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
        return True
    except json.JSONDecodeError as e:
        return e.msg != "Extra data"


def apply_mapping(row: Row, mapping: dict[str, str], where: str, key: str) -> Row:
    """Rename columns: `mapping` maps the column an adapter expects to the file's column."""
    if not mapping:
        return row
    out = dict(row)
    for expected, actual in mapping.items():
        if actual not in row:
            raise MathtuneError(
                f"column {actual!r} (mapped to {expected!r}) not found at {where}; columns: {', '.join(map(str, row))}",
                f"fix {key}.mapping.{expected}",
            )
        out[expected] = row[actual]
    return out


def need(row: Row, column: str, where: str, key: str) -> Any:
    """row[column], or an error naming the column, the columns present and the mapping option."""
    if column in row and row[column] is not None:
        return row[column]
    raise MathtuneError(
        f"missing column {column!r} at {where}; columns present: {', '.join(map(str, row)) or '(none)'}",
        f"set {key}.mapping.{column} to the column that holds it, e.g. {key}.mapping.{column}=<your column>",
    )
