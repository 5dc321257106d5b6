"""JSON lines, the one reader and writer behind every data format (TOFU splits, the multiple-choice world,
augmentation files, generations), so a bad file fails the same way everywhere: one line naming the file
and the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unlearnkit.errors import UnlearnError
from unlearnkit.outputs import write_text


def read_utf8(path: str | Path) -> str:
    """A text file's content; a non-UTF-8 file is an error naming its line and byte offset."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UnlearnError(f"{path} line {line}: not UTF-8 text (byte {err.start})") from None


def parse_jsonl(text: str, path: str | Path) -> list[tuple[int, Any]]:
    """(line number, value) of every non-blank line of `text`, read from `path` (named in errors)."""
    records = []
    # split on "\n" only: str.splitlines would also break at U+2028 etc., which JSON strings may hold raw
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append((lineno, json.loads(line)))
        except json.JSONDecodeError as err:
            raise UnlearnError(
                f"{path} line {lineno}: invalid JSON ({err.msg} at column {err.colno})"
            ) from None
        except RecursionError:
            raise UnlearnError(f"{path} line {lineno}: JSON nested too deeply") from None
    return records


def read_jsonl(path: str | Path) -> list[Any]:
    """The values of a JSON-lines file, blank lines skipped."""
    path = Path(path)
    if not path.is_file():
        raise UnlearnError(f"JSON lines file {path} does not exist")
    return [value for _, value in parse_jsonl(read_utf8(path), path)]


def parse_json(text: str, path: str | Path) -> Any:
    """One JSON document read from `path`; errors name the file and the line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UnlearnError(f"{path} line {err.lineno}: invalid JSON ({err.msg})") from None
    except RecursionError:
        raise UnlearnError(f"{path}: JSON nested too deeply") from None


def jsonl_text(records: list[dict]) -> str:
    """The JSON-lines text of `records`: one object per line, non-ASCII kept as is."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_jsonl(path: str | Path, records: list[dict]) -> None:
    """One JSON object per line, UTF-8, written atomically (a temporary file renamed into place)."""
    write_text(Path(path), jsonl_text(records))


def read_records(path: str | Path) -> list[Any]:
    """A list of records: a .jsonl file's lines, else a JSON list or the one list inside a JSON object
    ({"test": [...]}, as hub exports hold)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    data = parse_json(read_utf8(path), path)
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise UnlearnError(f"{path}: expected a list of records or an object with one list in it")
        data = lists[0]
    if not isinstance(data, list):
        raise UnlearnError(f"{path}: expected a list of records, got a JSON {type(data).__name__}")
    return data
