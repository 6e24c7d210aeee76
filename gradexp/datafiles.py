"""Local data files as people have them: CSV (any of , ; tab |, a BOM, quotes, blank lines,
decimal commas, class labels as words) or .npz; every value numeric and finite, or one line."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from gradexp.data import TASKS, Arrays
from gradexp.errors import ConfigError, check_choice

DELIMITERS = (",", ";", "\t", "|")
DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+([eE][+-]?\d+)?")
SHOWN = 40  # characters of a bad cell shown in an error


def from_file(path: str, target: str, task: str = "auto", encoding: str = "utf-8") -> Arrays:
    """A CSV with a header row, or an .npz of named arrays. A target of words (cat, dog) is a
    class label: the classes are the sorted words, recorded as meta['classes']."""
    check_choice("task", task, ("auto", *TASKS))
    if not isinstance(target, str) or not target:
        raise ConfigError("target", repr(target), "must name the target column")
    file = Path(path).expanduser()
    if file.is_dir():
        raise ConfigError("path", path, "is a directory, not a data file (give a CSV or .npz)")
    if not file.is_file():
        raise ConfigError("path", path, "no such file (give a CSV or .npz path)")
    if file.suffix == ".npz":
        columns, labels = _read_npz(file, path, target), None
    else:
        columns, labels = _read_csv(file, path, target, encoding)
    if target not in columns:
        shown = ", ".join(columns)
        raise ConfigError("target", target, f"not a column of {path}; columns: {shown}")
    y = columns.pop(target)
    if not columns:
        raise ConfigError("path", path, "has no feature columns besides the target")
    x = np.column_stack(list(columns.values()))
    if x.shape[0] == 0:
        raise ConfigError("path", path, "holds no rows of data")
    meta = {"columns": list(columns)}
    if labels is not None:
        if task == "regression":
            raise ConfigError("task", task, f"the target {target!r} holds words ({labels[0]!r}…)")
        task, meta["classes"] = "classification", labels
    if task == "auto":
        integral = np.all(y == np.round(y))
        task = "classification" if integral and len(np.unique(y)) <= 50 else "regression"
    return Arrays(x, y, task, meta)


def _read_npz(file: Path, path: str, target: str) -> dict[str, np.ndarray]:
    try:
        arrays = dict(np.load(file, allow_pickle=False))
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError("path", path, f"not a readable .npz file ({reason})") from None
    columns = {}
    for name, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise ConfigError("path", path, f"array {name!r} is not numeric (dtype {a.dtype})")
        if a.ndim == 2 and name != target:  # a feature matrix: one column per feature
            columns |= {f"{name}[{j}]": a[:, j].astype(np.float64) for j in range(a.shape[1])}
        elif a.ndim == 1:
            columns[name] = a.astype(np.float64)
        else:
            raise ConfigError("path", path, f"array {name!r} has shape {a.shape}; need 1-D or 2-D")
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        raise ConfigError("path", path, f"arrays have different lengths {sorted(lengths)}")
    _check_finite(columns, path)
    return columns


def _read_csv(file: Path, path: str, target: str, encoding: str):
    """(columns as float arrays, the target's class names if it holds words, else None)."""
    rows, delimiter = _rows(_text(file, path, encoding), path)
    header, body = [h.strip() for h in rows[0][1]], rows[1:]
    keep = [j for j, h in enumerate(header) if h or any(j < len(r) and r[j].strip()
                                                         for _, r in body)]  # fmt: skip
    names = [header[j] or f"column {j + 1}" for j in keep]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("path", path, f"the header names column {name!r} twice; rename one")
    for line, r in body:
        if len(r) != len(header):
            raise ConfigError("path", path, f"line {line} has {len(r)} fields, the header "
                              f"{len(header)} (fields separated by {delimiter!r})")  # fmt: skip
    values = np.empty((len(body), len(names)))
    labels = None
    for j, name in zip(keep, names):
        cells = [(line, r[j].strip()) for line, r in body]
        parsed = [_number(c, delimiter) for _, c in cells]
        if name == target and any(v is None and c for v, (_, c) in zip(parsed, cells)):
            empty = next((line for line, c in cells if not c), None)
            if empty is not None:
                raise ConfigError("path", path, f"line {empty}, column {name!r}: is empty")
            words = sorted({c for _, c in cells})
            values[:, names.index(name)] = [words.index(c) for _, c in cells]
            labels = words
            continue
        for (line, cell), v in zip(cells, parsed):
            if v is None:
                what = "is empty" if not cell else f"{cell[:SHOWN]!r} is not a number"
                raise ConfigError("path", path, f"line {line}, column {name!r}: {what}")
        values[:, names.index(name)] = parsed
    columns = {h: values[:, j] for j, h in enumerate(names)}
    _check_finite({h: c for h, c in columns.items() if not (h == target and labels)}, path)
    return columns, labels


def _text(file: Path, path: str, encoding: str) -> str:
    data = file.read_bytes()
    try:
        return data.decode("utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding)
    except LookupError:
        raise ConfigError("encoding", encoding, "not a text encoding Python knows") from None
    except UnicodeDecodeError as e:
        byte = data[e.start]
        raise ConfigError(
            "path",
            path,
            f"is not {encoding} text (byte 0x{byte:02x} at offset "
            f"{e.start}); give its encoding, e.g. data.encoding=latin-1",
        ) from None


def _rows(text: str, path: str) -> tuple[list[tuple[int, list[str]]], str]:
    """(line number, fields) of every row that is not blank, and the delimiter they use: the
    candidate that splits the first rows into the most fields, the same number in each."""
    if not text.strip():
        raise ConfigError("path", path, "is empty; need a header row and data rows")
    sample = [line for line in text.splitlines() if line.strip()][:20]
    score = {}
    reader = None
    try:
        for d in DELIMITERS:
            widths = {len(r) for r in csv.reader(sample, delimiter=d)}
            score[d] = (len(widths) == 1 and min(widths) > 1, max(widths), d == ",")
        delimiter = max(DELIMITERS, key=score.__getitem__)  # consistent, widest, then ","
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        rows = []
        for fields in reader:
            if any(f.strip() for f in fields):
                rows.append((reader.line_num, fields))
    except csv.Error as e:  # e.g. a field longer than csv.field_size_limit()
        where = f"line {reader.line_num + 1}: " if reader is not None else ""
        raise ConfigError("path", path, f"{where}{e}") from None
    return rows, delimiter


def _number(cell: str, delimiter: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        if delimiter != "," and DECIMAL_COMMA.fullmatch(cell):  # 1,5 in a ;-separated file
            return float(cell.replace(",", "."))
        return None


def _check_finite(columns: dict[str, np.ndarray], path: str) -> None:
    for name, c in columns.items():
        bad = np.flatnonzero(~np.isfinite(c))
        if bad.size:
            raise ConfigError(
                "path",
                path,
                f"column {name!r} has {c[bad[0]]} in row {bad[0] + 1}; all values must be finite",
            )
