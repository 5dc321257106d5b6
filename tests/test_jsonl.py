"""The one JSON-lines reader/writer every data format goes through."""

import json

import pytest

from unlearnkit.data.jsonl import parse_jsonl, read_jsonl, read_records, write_jsonl
from unlearnkit.errors import UnlearnError


def test_round_trip_keeps_unicode_line_separators(tmp_path):
    records = [{"q": "a\u2028b", "n": 1}, {"q": "ü", "n": 2}]
    path = tmp_path / "x.jsonl"
    write_jsonl(path, records)
    assert read_jsonl(path) == records
    assert not list(tmp_path.glob("*.tmp"))


def test_errors_name_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(UnlearnError, match=rf"^{path} line 3: invalid JSON \(.* at column \d+\)$"):
        read_jsonl(path)
    assert parse_jsonl('\n{"a": 1}\n', path) == [(2, {"a": 1})]
    with pytest.raises(UnlearnError, match="line 1: JSON nested too deeply"):
        parse_jsonl("[" * 100_000, path)
    with pytest.raises(UnlearnError, match="does not exist"):
        read_jsonl(tmp_path / "missing.jsonl")
    path.write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(UnlearnError, match="line 1: not UTF-8 text"):
        read_jsonl(path)


def test_records_from_a_json_list_or_an_object_holding_one(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"test": [{"a": 1}]}))
    assert read_records(path) == [{"a": 1}]
    path.write_text(json.dumps({"a": [1], "b": [2]}))
    with pytest.raises(UnlearnError, match="one list in it"):
        read_records(path)
    path.write_text("[1,\n oops]")
    with pytest.raises(UnlearnError, match=f"{path} line 2: invalid JSON"):
        read_records(path)
