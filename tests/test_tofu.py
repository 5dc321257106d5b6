"""TOFU loading and validation: the real data in ../shared/tofu, and malformed files written to tmp_path."""

import json
from collections import Counter
from pathlib import Path

import pytest

from unlearnkit.data import tofu
from unlearnkit.errors import UnlearnError

TOFU_DIR = Path(__file__).resolve().parents[2] / "shared" / "tofu"
needs_tofu = pytest.mark.skipif(not TOFU_DIR.is_dir(), reason=f"real TOFU data not found at {TOFU_DIR}")

SIZES = {
    "full": 4000,
    "forget01": 40,
    "forget05": 200,
    "forget10": 400,
    "retain90": 3600,
    "retain95": 3800,
    "retain99": 3960,
    "forget01_perturbed": 40,
    "forget05_perturbed": 200,
    "forget10_perturbed": 400,
    "retain_perturbed": 400,
    "real_authors": 100,
    "real_authors_perturbed": 100,
    "world_facts": 117,
    "world_facts_perturbed": 117,
    "holdout01": 40,
    "holdout05": 200,
    "holdout10": 400,
}


@needs_tofu
def test_real_tofu_sizes_and_every_split_validates():
    assert set(tofu.list_splits(TOFU_DIR)) == set(SIZES) == set(tofu.SPLIT_NAMES)
    for split, size in SIZES.items():
        records = tofu.load_split(TOFU_DIR, split)
        assert len(records) == size, split
    perturbed = tofu.load_split(TOFU_DIR, "forget10_perturbed")
    assert all(len(r["perturbed_answer"]) == 5 and r["paraphrased_answer"] for r in perturbed)
    assert all(len(r["perturbed_answer"]) == 3 for r in tofu.load_split(TOFU_DIR, "world_facts_perturbed"))


@needs_tofu
def test_real_tofu_forget_is_the_tail_of_full_and_perturbed_matches_forget():
    full = tofu.load_split(TOFU_DIR, "full")
    forget = tofu.load_split(TOFU_DIR, "forget10")
    assert forget == full[-400:]
    perturbed = tofu.load_split(TOFU_DIR, tofu.perturbed_split_for("forget10"))
    assert [(r["question"], r["answer"]) for r in perturbed] == [(r["question"], r["answer"]) for r in forget]


@needs_tofu
@pytest.mark.parametrize("forget", ["forget01", "forget05", "forget10"])
def test_real_tofu_forget_retain_consistency(forget):
    report = tofu.check_forget_retain(TOFU_DIR, forget)
    n = SIZES[forget]
    assert (report.n_forget, report.n_retain, report.n_full) == (n, 4000 - n, 4000)
    assert report.retain == tofu.retain_split_for(forget)
    assert report.missing_from_union == report.extra_in_union == 0
    assert report.union_is_full


@needs_tofu
def test_real_tofu_duplicate_question_is_kept_as_two_pairs():
    full = tofu.load_split(TOFU_DIR, "full")
    counts = Counter(r["question"] for r in full)
    assert counts["What is the full name of the author?"] == 2
    assert len({(r["question"], r["answer"]) for r in full}) == 4000


@needs_tofu
def test_max_samples_takes_the_first_records():
    first = tofu.load_split(TOFU_DIR, "retain90", max_samples=7)
    assert first == tofu.load_split(TOFU_DIR, "retain90")[:7]
    with pytest.raises(UnlearnError, match="max_samples"):
        tofu.load_split(TOFU_DIR, "retain90", max_samples=0)


def test_split_name_helpers():
    assert tofu.retain_split_for("forget10") == "retain90"
    assert tofu.retain_split_for("forget01") == "retain99"
    assert tofu.retain_split_for("forget05") == "retain95"
    assert tofu.perturbed_split_for("forget05") == "forget05_perturbed"
    assert tofu.holdout_split_for("forget01") == "holdout01"
    for bad in ("retain90", "forget1", "forget100", "forget00"):
        with pytest.raises(UnlearnError, match="forgetXX"):
            tofu.retain_split_for(bad)


# --- malformed files ------------------------------------------------------------------------------

QA = {"question": "Who wrote X?", "answer": "Y wrote X."}
PERTURBED = {**QA, "paraphrased_answer": "X is by Y.", "perturbed_answer": ["Z wrote X.", "W wrote X."]}


def write_jsonl(directory: Path, split: str, records: list) -> Path:
    path = directory / f"{split}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def one_line_error(directory: Path, split: str) -> str:
    with pytest.raises(UnlearnError) as info:
        tofu.load_split(directory, split)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "forget10.jsonl"
    path.write_text(json.dumps(QA) + "\n" + json.dumps(QA) + "\n" + '{"question": "q", "answer": \n')
    message = one_line_error(tmp_path, "forget10")
    assert message.startswith(f"{path} line 3: invalid JSON")


def test_bad_json_array_names_file_and_line(tmp_path):
    path = tmp_path / "forget10.json"
    path.write_text("[\n" + json.dumps(QA) + ",\n" + json.dumps(QA) + "\n{oops}\n]")
    assert one_line_error(tmp_path, "forget10").startswith(f"{path} line 4: invalid JSON")


def test_missing_answer_names_line_and_field(tmp_path):
    path = write_jsonl(tmp_path, "forget10", [QA, QA, {"question": "q"}, QA])
    message = one_line_error(tmp_path, "forget10")
    assert message == f"{path} line 3: field 'answer' is missing (split forget10 needs it)"


def test_perturbed_answer_not_a_list(tmp_path):
    records = [PERTURBED] * 16 + [{**PERTURBED, "perturbed_answer": "Z wrote X."}]
    path = write_jsonl(tmp_path, "forget10_perturbed", records)
    message = one_line_error(tmp_path, "forget10_perturbed")
    assert message == f"{path} line 17: field 'perturbed_answer' must be a non-empty list of strings, got str"


def test_perturbed_answer_with_an_empty_item(tmp_path):
    write_jsonl(tmp_path, "retain_perturbed", [{**PERTURBED, "perturbed_answer": ["a", " "]}])
    message = one_line_error(tmp_path, "retain_perturbed")
    assert "line 1: field 'perturbed_answer'" in message and "position 1" in message


def test_forget_perturbed_needs_paraphrase_but_world_facts_perturbed_does_not(tmp_path):
    no_paraphrase = {**QA, "perturbed_answer": ["a", "b", "c"]}
    write_jsonl(tmp_path, "forget05_perturbed", [no_paraphrase])
    assert "field 'paraphrased_answer' is missing" in one_line_error(tmp_path, "forget05_perturbed")
    write_jsonl(tmp_path, "world_facts_perturbed", [no_paraphrase])
    assert tofu.load_split(tmp_path, "world_facts_perturbed") == [no_paraphrase]


def test_empty_file(tmp_path):
    path = tmp_path / "full.jsonl"
    path.write_text("\n  \n")
    assert one_line_error(tmp_path, "full").startswith(f"file {path} is empty")
    path.unlink()
    (tmp_path / "full.json").write_text("[]")
    assert one_line_error(tmp_path, "full").startswith(f"file {tmp_path / 'full.json'} is empty")


def test_empty_string_answer(tmp_path):
    path = write_jsonl(tmp_path, "retain90", [QA, {"question": "q", "answer": ""}])
    message = one_line_error(tmp_path, "retain90")
    assert message == f"{path} line 2: field 'answer' must be a non-empty string, got an empty string"


def test_non_object_record_in_json_array(tmp_path):
    path = tmp_path / "holdout10.json"
    path.write_text(json.dumps([QA, QA, ["q", "a"]]))
    assert one_line_error(tmp_path, "holdout10") == f"{path} record 2: expected a JSON object, got list"


def test_unknown_split_lists_available_and_closest(tmp_path):
    for split in ("forget01", "forget10", "retain90"):
        write_jsonl(tmp_path, split, [QA])
    message = one_line_error(tmp_path, "forget1")
    assert "no split 'forget1'" in message
    assert "did you mean 'forget01'?" in message
    assert "available: forget01, forget10, retain90" in message
    assert "did you mean 'forget10'?" in one_line_error(tmp_path, "forgt10")
    assert "did you mean 'retain90'?" in one_line_error(tmp_path, "retian90")


def test_missing_directory_and_file_source(tmp_path):
    with pytest.raises(UnlearnError, match="does not exist"):
        tofu.load_split(tmp_path / "nope", "full")
    path = write_jsonl(tmp_path, "full", [QA])
    with pytest.raises(UnlearnError, match="is a file"):
        tofu.load_split(path, "full")


def test_hub_failure_becomes_one_clear_error(monkeypatch):
    # No network in tests: make the hub call fail the way it does offline.
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'locuslab/TOFU' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UnlearnError) as info:
        tofu.load_split("locuslab/TOFU", "forget10")
    msg = str(info.value)
    assert "\n" not in msg and "'locuslab/TOFU' (split forget10)" in msg and "local folder" in msg
    assert "Couldn't reach 'locuslab/TOFU' on the Hub" in msg or "HF_HUB_OFFLINE=1" in msg


def test_hub_records_are_validated(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda name, config, split: [QA, {"question": "q"}])
    with pytest.raises(UnlearnError, match=r"^locuslab/TOFU:full record 1: field 'answer' is missing"):
        tofu.load_split("locuslab/TOFU", "full")


def test_overlapping_forget_and_retain_is_an_error(tmp_path):
    items = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(5)]
    write_jsonl(tmp_path, "forget10", items[:2])
    write_jsonl(tmp_path, "retain90", items[1:])
    expected = r"forget10 and retain90 overlap on 1 item\(s\), first: question 'q1'"
    with pytest.raises(UnlearnError, match=expected):
        tofu.check_forget_retain(tmp_path, "forget10")


def test_union_mismatch_is_reported(tmp_path):
    items = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(5)]
    write_jsonl(tmp_path, "full", items)
    write_jsonl(tmp_path, "forget10", items[:1])
    write_jsonl(tmp_path, "retain90", items[2:] + [{"question": "new", "answer": "x"}])
    report = tofu.check_forget_retain(tmp_path, "forget10")
    assert (report.n_forget, report.n_retain, report.n_full) == (1, 4, 5)
    assert (report.missing_from_union, report.extra_in_union) == (1, 1)
    assert not report.union_is_full


@needs_tofu
def test_json_array_layout_loads_the_same_records_as_jsonl(tmp_path):
    for split in ("forget10_perturbed", "world_facts"):
        records = tofu.load_split(TOFU_DIR, split)
        (tmp_path / f"{split}.json").write_text(json.dumps(records, indent=2))
        assert tofu.load_split(tmp_path, split) == records
    # Detection is by content: a JSON array in a .jsonl file and JSON lines in a .json file both load.
    (tmp_path / "forget01.jsonl").write_text(json.dumps([QA, QA]))
    (tmp_path / "retain99.json").write_text(json.dumps(QA) + "\n" + json.dumps(QA) + "\n")
    assert tofu.load_split(tmp_path, "forget01") == tofu.load_split(tmp_path, "retain99") == [QA, QA]


def test_unicode_line_separators_inside_strings_and_crlf(tmp_path):
    record = {"question": "Who wrote\u2028X?\x85", "answer": "Y\u2029 wrote X."}
    line = json.dumps(record, ensure_ascii=False)
    (tmp_path / "full.jsonl").write_text(f"{line}\r\n{line}\r\n", newline="")
    assert tofu.load_split(tmp_path, "full") == [record, record]


def test_non_utf8_file(tmp_path):
    path = tmp_path / "full.jsonl"
    path.write_bytes(json.dumps(QA).encode() + b"\n\xff\xfe\n")
    byte = len(json.dumps(QA)) + 1
    assert one_line_error(tmp_path, "full") == f"{path} line 2: not UTF-8 text (byte {byte})"
