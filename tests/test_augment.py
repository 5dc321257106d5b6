"""ULD's augmentation is training data of its own: file formats, the world's leak-free augmentation,
the guard against training on evaluated strings, and the honest epoch choice."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from helpers import read_jsonl, run_cli

from unlearnkit.config import load_config
from unlearnkit.costs import peak_rss_bytes
from unlearnkit.data.augment import (
    augment_file_for,
    drop_evaluated,
    eval_overlap,
    evaluated_strings,
    read_augment_jsonl,
    read_augmentation,
    read_uld_csv,
    validation_file_for,
)
from unlearnkit.data.tofu import SPLIT_NAMES, load_perturbed_file, load_split
from unlearnkit.errors import UnlearnError
from unlearnkit.methods import get_method
from unlearnkit.pipeline import check_eval_overlap, load_run_data

FORGETS = ("forget01", "forget05", "forget10")


# ------------------------------------------------------------------ formats


def test_official_csvs_give_25_25_3_per_forget10_question(uld_aug, real_tofu):
    rows = read_uld_csv(uld_aug, "forget10")
    forget = load_split(real_tofu, "forget10")
    assert [r["question"] for r in rows] == [r["question"] for r in forget]
    assert [r["answer"] for r in rows] == [r["answer"] for r in forget]
    assert {(len(r["paraphrased_questions"]), len(r["paraphrased_answers"]), len(r["perturbed_answers"]))
            for r in rows} == {(25, 25, 3)}
    assert read_augmentation(uld_aug, "forget10") == rows  # a directory is read as the CSV release


def test_official_release_drops_exactly_its_evaluated_strings(uld_aug, real_tofu):
    """The README's count: 8 of the official answers equal an evaluated string of their split."""
    total = 0
    for forget in FORGETS:
        rows = read_uld_csv(uld_aug, forget)
        evaluated = evaluated_strings(load_split(real_tofu, f"{forget}_perturbed"))
        by_hand = sum(a in evaluated for r in rows for a in r["paraphrased_answers"] + r["perturbed_answers"])
        clean, dropped = drop_evaluated(rows, evaluated)
        assert dropped.count == by_hand
        assert not {a for r in clean for a in r["paraphrased_answers"] + r["perturbed_answers"]} & evaluated
        total += dropped.count
    assert total == 8


def test_jsonl_reader_validates(tmp_path):
    good = {"question": "Q?", "answer": "A.", "paraphrased_questions": ["Q2?"],
            "paraphrased_answers": ["A2.", "A3."], "perturbed_answers": ["B."]}
    path = tmp_path / "forget10_augment.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "paraphrased_questions": []}) + "\n")
    assert read_augment_jsonl(path) == [good, {**good, "paraphrased_questions": []}]
    path.write_text(json.dumps({**good, "perturbed_answers": "B."}) + "\n")
    with pytest.raises(UnlearnError, match="line 1: 'perturbed_answers' must be a list"):
        read_augment_jsonl(path)
    path.write_text("{not json\n")
    with pytest.raises(UnlearnError, match="line 1: invalid JSON"):
        read_augment_jsonl(path)
    with pytest.raises(UnlearnError, match="does not exist"):
        read_augmentation(tmp_path / "missing.jsonl", "forget10")
    with pytest.raises(UnlearnError, match="paraphrase_res.csv not found"):
        read_augmentation(tmp_path, "forget10")
    bad = tmp_path / "forget10_perturbed"
    bad.mkdir()
    with (bad / "paraphrase_res.csv").open("w", newline="") as fh:
        csv.writer(fh).writerow(["Q?", "A.", "not a list", "[]"])
    with pytest.raises(UnlearnError, match="row 1: expected a Python list literal"):
        read_uld_csv(tmp_path, "forget10")


# ------------------------------------------------------------------ the world's own augmentation


def test_world_augmentation_is_disjoint_from_every_evaluated_string(micro_world):
    data = micro_world.data_dir
    evaluated = set()
    for split in SPLIT_NAMES:
        for row in load_split(data, split):
            for value in row.values():
                evaluated.update(value if isinstance(value, list) else [value])
    for forget in FORGETS:
        rows = read_augment_jsonl(augment_file_for(data, forget))
        forget_rows = load_split(data, forget)
        assert [(r["question"], r["answer"]) for r in rows] == [(r["question"], r["answer"])
                                                                for r in forget_rows]
        for r in rows:
            assert len(r["paraphrased_questions"]) >= 3 and len(r["paraphrased_answers"]) >= 5
            assert len(r["perturbed_answers"]) >= 3
            texts = r["paraphrased_questions"] + r["paraphrased_answers"] + r["perturbed_answers"]
            assert len(set(texts)) == len(texts)
            assert not set(texts) & evaluated, r["question"]
        validation = load_perturbed_file(validation_file_for(data, forget))
        assert len(validation) == len(forget_rows)
        for r in validation:
            texts = [r["question"], r["answer"], r["paraphrased_answer"], *r["perturbed_answer"]]
            assert not set(texts) & evaluated, r["question"]
            assert not set(texts) & {t for a in rows for k in ("paraphrased_questions", "paraphrased_answers",
                                                               "perturbed_answers") for t in a[k]}


def test_prepare_adds_augmentation_without_touching_anything_else(micro_world, tmp_path):
    """An existing world (made before augmentation existed) gains only the new files: same data files,
    same tokenizer and models, every step reused."""
    from unlearnkit.prepare import AUGMENT_STEP_FILE, prepare

    root = Path(shutil.copytree(micro_world.root, tmp_path / "world"))
    added = [root / "data" / AUGMENT_STEP_FILE] + [p(root / "data", f) for f in FORGETS
                                                   for p in (augment_file_for, validation_file_for)]
    for path in added:
        path.unlink()

    def digests() -> dict:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file() and p.name != "prepare.json"}

    before = digests()
    manifest = prepare("micro", root, seed=0, progress=False)
    after = digests()
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(set(after) - set(before)) == sorted(str(p.relative_to(root)) for p in added)
    assert all(info["reused"] for info in manifest["models"].values())
    assert manifest["tokenizer"]["reused"] and not manifest["augmentation"]["reused"]
    assert [read_jsonl(p) for p in added[1:]] == [read_jsonl(micro_world.data_dir / p.name)
                                                 for p in added[1:]]
    assert prepare("micro", root, seed=0, progress=False)["augmentation"]["reused"]


# ------------------------------------------------------------------ the guard


def test_guard_counts_augmentation_and_foreign_retain_records_only():
    perturbed = [{"question": "Q1?", "answer": "A1.", "paraphrased_answer": "P1.",
                  "perturbed_answer": ["W1.", "W2."]}]
    full = {("Q1?", "A1."), ("R?", "W2.")}  # a retain row whose answer happens to be W2
    parts = {"forget": [{"question": "Q1?", "answer": "P1."}],  # the forget part is never checked
             "retain": [{"question": "R?", "answer": "W2."}, {"question": "Q1?", "answer": "W1."}],
             "augment_forget": [{"question": "Q1 again?", "answer": "P1."},
                                {"question": "Q1?", "answer": "X."}],
             "augment_retain": [{"question": "R?", "answer": "W2."}]}
    hits = eval_overlap(parts, perturbed, full)
    assert [(part, r["answer"]) for part, r in hits] == [("retain", "W1."), ("augment_forget", "P1."),
                                                          ("augment_retain", "W2.")]


def leaky_world(micro_world, tmp_path) -> Path:
    """A copy of the micro data whose retain90 also holds one forget question's perturbed answer."""
    data = Path(shutil.copytree(micro_world.data_dir, tmp_path / "data"))
    row = load_split(data, "forget10_perturbed")[0]
    with (data / "retain90.jsonl").open("a") as fh:
        leak = {"question": "Which city did the writer pick?", "answer": row["perturbed_answer"][2]}
        fh.write(json.dumps(leak) + "\n")
    return data


def test_run_refuses_an_overlapping_record_and_opt_out_is_recorded(micro_world, tmp_path, capsys):
    data = leaky_world(micro_world, tmp_path)
    wrong = load_split(data, "forget10_perturbed")[0]["perturbed_answer"][2]
    for method in ("gd", "uld"):
        code, err = run_cli(capsys, "run", "--method", method, "--model", micro_world.target_dir,
                            "--data", data, "--forget", "forget10", "--out", tmp_path / method, "--no-eval",
                            *(["method.params.retain_size=all"] if method == "uld" else []))
        assert code == 2 and "1 training records" in err and "forget10_perturbed" in err, err
        assert wrong[:30] in " ".join(err.split()) and "--allow-eval-overlap" in err
        assert not (tmp_path / method).exists()
    out = tmp_path / "ablation"
    code, err = run_cli(capsys, "run", "--method", "gd", "--model", micro_world.target_dir, "--data", data,
                        "--forget", "forget10", "--out", out, "--no-eval", "--allow-eval-overlap",
                        "train.max_steps=1", "train.warmup_ratio=0")
    assert code == 0, err
    record = json.loads((out / "run.json").read_text())
    assert record["eval_overlap"]["allowed"] and record["eval_overlap"]["overlapping_records"] == 1
    assert record["eval_overlap"]["first"]["answer"] == wrong


@pytest.mark.parametrize("method", ["uld", "gd", "npo", "dpo"])
def test_guard_is_quiet_on_leak_free_data(method, micro_world):
    """The world's own augmentation and its retain split, templated answers and all, pass."""
    data = load_run_data(str(micro_world.data_dir), "forget10")
    spec = get_method(method)
    cfg = load_config(None, [f"data.data={micro_world.data_dir}"])
    params = spec.resolve_params({"retain_size": "all"} if method == "uld" else None)
    aug = read_augment_jsonl(augment_file_for(micro_world.data_dir, "forget10")) if method == "uld" else None
    entry = check_eval_overlap(cfg, spec, params, spec.train_settings({}), data, aug)
    assert entry == {"checked": True, "allowed": False, "overlapping_records": 0, "first": None}


@pytest.mark.parametrize("forget", FORGETS)
def test_guard_is_quiet_on_real_tofu_with_the_official_augmentation(forget, real_tofu, uld_aug):
    data = load_run_data(str(real_tofu), forget)
    aug, _ = drop_evaluated(read_uld_csv(uld_aug, forget), evaluated_strings(data.perturbed))
    cfg = load_config(None, [f"data.data={real_tofu}", f"data.forget={forget}"])
    for method in ("uld", "gd"):
        spec = get_method(method)
        params = spec.resolve_params({"retain_size": "all"} if method == "uld" else None)
        entry = check_eval_overlap(cfg, spec, params, spec.train_settings({}), data,
                                   aug if method == "uld" else None)
        assert entry["overlapping_records"] == 0


# ------------------------------------------------------------------ a ULD run end to end


def test_uld_run_trains_on_the_file_writes_train_data_and_keeps_the_last_epoch(micro_world, tmp_path, capsys):
    data = micro_world.data_dir
    out = tmp_path / "uld"
    code, err = run_cli(capsys, "run", "--method", "uld", "--model", micro_world.target_dir, "--data", data,
                        "--forget", "forget05", "--out", out, "--no-eval", "--epochs", "2",
                        "--augment-file", augment_file_for(data, "forget05"))
    assert code == 0, err
    record = json.loads((out / "run.json").read_text())
    assert record["epoch_choice"] == {"rule": "last", "epoch": 2.0}
    assert 100 * 2**20 < record["train_peak_rss"] <= peak_rss_bytes()  # this process: torch alone is more
    assert record["augmentation"]["dropped_evaluated"] == 0
    assert record["eval_overlap"]["overlapping_records"] == 0
    seen = read_jsonl(out / "train_data.jsonl")
    assert len(seen) == record["train_records"]
    aug = read_augment_jsonl(augment_file_for(data, "forget05"))
    by_part = {p: {(r["question"], r["answer"]) for r in seen if r["part"] == p}
               for p in {r["part"] for r in seen}}
    assert set(by_part) == {"forget", "retain", "augment_forget", "augment_retain"}
    assert by_part["forget"] == {(r["question"], r["answer"]) for r in load_split(data, "forget05")}
    assert by_part["augment_retain"] == {(r["question"], a) for r in aug for a in r["perturbed_answers"]}
    assert {a for _, a in by_part["augment_forget"]} == {a for r in aug for a in r["paraphrased_answers"]}
    assert by_part["retain"] <= {(r["question"], r["answer"]) for r in load_split(data, "retain95")}
    assert not {a for _, a in by_part["augment_forget"] | by_part["augment_retain"]} & evaluated_strings(
        load_split(data, "forget05_perturbed"))

    code, err = run_cli(capsys, "run", "--method", "uld", "--model", micro_world.target_dir, "--data", data,
                        "--forget", "forget05", "--out", tmp_path / "bare", "--no-eval", "train.max_steps=1",
                        "train.warmup_ratio=0")
    assert code == 0 and "no augmentation file" in " ".join(err.split()), err
    assert {r["part"] for r in read_jsonl(tmp_path / "bare" / "train_data.jsonl")} == {"forget", "retain"}


def test_best_epoch_only_on_a_held_out_validation_file(micro_world, tmp_path, capsys):
    data = micro_world.data_dir
    retain = micro_world.retain_dirs["forget05"]
    base = ["run", "--method", "uld", "--model", micro_world.target_dir, "--data", data,
            "--forget", "forget05", "--no-eval", "--epochs", "2", "method.params.select_best_epoch=true"]
    code, err = run_cli(capsys, *base, "--out", tmp_path / "a", "--reference", retain)
    assert code == 2 and "validation_file" in err, err
    code, err = run_cli(capsys, *base, "--out", tmp_path / "b", "--reference", retain,
                        f"method.params.validation_file={data / 'forget05_perturbed.jsonl'}")
    assert code == 2 and "shares 8 rows with the reported split" in " ".join(err.split()), err
    code, err = run_cli(capsys, *base, "--out", tmp_path / "c",
                        f"method.params.validation_file={validation_file_for(data, 'forget05')}")
    assert code == 2 and "retain model's directory" in " ".join(err.split()), err
    out = tmp_path / "d"
    code, err = run_cli(capsys, *base, "--out", out, "--reference", retain,
                        f"method.params.validation_file={validation_file_for(data, 'forget05')}")
    assert code == 0, err
    choice = json.loads((out / "run.json").read_text())["epoch_choice"]
    assert choice["rule"] == "best validation forget quality" and choice["validation_rows"] == 8
    fqs = [h["validation_forget_quality"] for h in choice["history"]]
    assert [h["epoch"] for h in choice["history"]] == [1, 2] and all(0 <= q <= 1 for q in fqs)
    assert choice["epoch"] == max((q, e) for e, q in enumerate(fqs, 1))[1]
