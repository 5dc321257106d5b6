"""`prepare --preset tofu-*` on real TOFU: the tofu-smollm2 code path with a tiny Llama on a few records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import run_cli
from scipy.stats import ks_2samp
from transformers import AutoModelForCausalLM, AutoTokenizer

from unlearnkit.data.tofu import load_split
from unlearnkit.errors import UnlearnError
from unlearnkit.eval.tofu import load_eval_log, tr_scores
from unlearnkit.finetune import answer_loss
from unlearnkit.prepare import STEP_FILE
from unlearnkit.prepare.tofu import TOFU_PRESETS, prepare_tofu, training_records

REPO = Path(__file__).resolve().parents[1]
N = 6  # records of each training part and rows of each evaluation split
# 80 epochs of one step each (train loss 6.3 -> 0.13 on the 12 target records), a few seconds idle.
PRESET = replace(TOFU_PRESETS["tofu-micro"],
                 train=TOFU_PRESETS["tofu-micro"].train | {"epochs": 80, "lr": 1e-2, "batch_size": 16})


def _pairs(rows):
    return {(r["question"], r["answer"]) for r in rows}


def test_recipe_records_are_forget10_plus_the_scored_retain_authors(real_tofu):
    recs = training_records(TOFU_PRESETS["tofu-smollm2"], real_tofu)
    assert len(recs["forget"]) == 400 and len(recs["retain"]) == 400
    assert _pairs(recs["forget"]) == _pairs(load_split(real_tofu, "forget10"))
    assert _pairs(recs["retain"]) == _pairs(load_split(real_tofu, "retain_perturbed"))
    assert _pairs(recs["retain"]) <= _pairs(load_split(real_tofu, "retain90"))
    everything = replace(TOFU_PRESETS["tofu-smollm2"], retain="all")
    assert len(training_records(everything, real_tofu)["retain"]) == 3600


@pytest.fixture(scope="module")
def prepared(real_tofu, tmp_path_factory):
    out = tmp_path_factory.mktemp("tofu-micro")
    return out, prepare_tofu(PRESET, real_tofu, out, max_samples=N, progress=False)


@pytest.mark.slow  # with its siblings on `prepared`: 32 s on a busy machine (fixture 17 s)
def test_target_learns_forget_retain_model_never_sees_it(prepared, real_tofu):
    out, m = prepared
    assert m["models"]["target"]["n_examples"] == 2 * N and m["models"]["retain"]["n_examples"] == N
    assert m["retain_models"] == {"forget01": "retain", "forget05": "retain", "forget10": "retain"}
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    forget = load_split(real_tofu, "forget10", N)
    retain = [r for r in load_split(real_tofu, "retain90") if (r["question"], r["answer"])
              in _pairs(load_split(real_tofu, "retain_perturbed"))][:N]

    def loss(name, rows):
        return answer_loss(AutoModelForCausalLM.from_pretrained(out / name, use_safetensors=True), tok, rows)

    assert loss("target", forget) < 1.0 < 2.0 < loss("retain", forget)
    assert loss("target", retain) < 1.0 and loss("retain", retain) < 1.0


@pytest.mark.slow  # shares the `prepared` fixture with the test above
def test_evals_beside_models_and_forget_quality_against_the_retain_model(prepared):
    out, m = prepared
    retain_log = load_eval_log(out / "eval" / "retain" / "forget10")
    target_log = load_eval_log(out / "eval" / "target" / "forget10")
    assert len(retain_log["forget_Q_A_Prob"]["value_by_index"]) == N
    summary = json.loads((out / "eval" / "target" / "forget10" / "TOFU_SUMMARY.json").read_text())
    expected = ks_2samp(tr_scores(target_log), tr_scores(retain_log)).pvalue
    assert summary["forget_quality"] == pytest.approx(expected, rel=1e-12)
    assert m["evals"]["target/forget10"]["summary"] == summary
    assert "forget_quality" not in m["evals"]["retain/forget10"]["summary"]
    # the target knows its forget answers better than the retain model does
    assert summary["forget_Q_A_Prob"] > 2 * m["evals"]["retain/forget10"]["summary"]["forget_Q_A_Prob"]


@pytest.mark.slow  # shares the `prepared` fixture with the tests above
def test_rerun_reuses_every_step_and_new_eval_split_only_adds_evals(prepared, real_tofu):
    out, m = prepared
    again = prepare_tofu(PRESET, real_tofu, out, max_samples=N, progress=False)
    assert all(info["reused"] for info in again["models"].values())
    assert all(info["reused"] for info in again["evals"].values())
    assert [v["hash"] for v in again["models"].values()] == [v["hash"] for v in m["models"].values()]
    more = prepare_tofu(PRESET, real_tofu, out, max_samples=N, forget_splits=["forget01"], progress=False)
    assert all(info["reused"] for info in more["models"].values())
    assert not more["evals"]["target/forget01"]["reused"]
    assert json.loads((out / "eval" / "target" / "forget01" / STEP_FILE).read_text())["forget"] == "forget01"


def test_cli_smoke_and_bad_input(real_tofu, tmp_path, capsys):
    out = tmp_path / "cli"
    code, err = run_cli(capsys, "prepare", "--preset", "tofu-micro", "--data", real_tofu, "--out", out,
                        "--max-samples", "9")  # 9 retain rows = 2 steps: one past the warmup step at lr 0
    assert code == 0, err
    manifest = json.loads((out / "prepare.json").read_text())
    assert manifest["preset"] == "tofu-micro" and manifest["max_samples"] == 9
    assert manifest["models"]["target"]["n_examples"] == 18
    for name in ("TOFU_EVAL.json", "TOFU_SUMMARY.json", "TOFU_GENERATIONS.jsonl", "eval_meta.json"):
        assert (out / "eval" / "target" / "forget10" / name).is_file(), name
    code, err = run_cli(capsys, "prepare", "--preset", "tofu-micro", "--data", real_tofu, "--out", out,
                        "--max-samples", "9")  # a re-run (or an interrupted run resumed) reuses every step
    assert code == 0, err
    again = json.loads((out / "prepare.json").read_text())
    assert all(info["reused"] for part in ("models", "evals") for info in again[part].values())
    code, err = run_cli(capsys, "prepare", "--preset", "tofu-micro", "--out", tmp_path / "x")
    assert code == 2 and "--data" in err and "Traceback" not in err
    code, err = run_cli(capsys, "prepare", "--preset", "micro", "--data", real_tofu, "--out", tmp_path / "y")
    assert code == 2 and "tofu-*" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_bad_forget_split_and_data(real_tofu, tmp_path):
    with pytest.raises(UnlearnError, match="inside forget10"):
        prepare_tofu("tofu-micro", real_tofu, tmp_path / "a", forget_splits=["forget15"], max_samples=2,
                     progress=False)
    with pytest.raises(UnlearnError, match="does not exist"):
        prepare_tofu("tofu-micro", tmp_path / "nope", tmp_path / "b", progress=False)
    with pytest.raises(UnlearnError, match="unknown TOFU preset"):
        prepare_tofu("tofu-big", real_tofu, tmp_path / "c", progress=False)
    assert not any((tmp_path / d).exists() for d in "abc")


@pytest.mark.slow  # shares the `prepared` fixture; four CLI subprocesses on the tiny Llama, ~1 min busy
def test_results_script_runs_references_uld_and_a_baseline(prepared, real_tofu, uld_aug, tmp_path):
    """scripts/tofu_smollm2.sh (the commands behind docs/results.md's real-TOFU table) on the tofu-micro
    world: the same code path as on SmolLM2, ULD with the official augmentation through its config."""
    world, _ = prepared
    out = tmp_path / "runs"
    env = os.environ | {"TOFU_DATA": str(real_tofu), "ULD_AUG": str(uld_aug),
                        "UNLEARN": str(Path(sys.executable).parent / "unlearn"), "OMP_NUM_THREADS": "1"}

    def script(*names):
        return subprocess.run(["bash", "scripts/tofu_smollm2.sh", str(world), str(out), *names], cwd=REPO,
                              env=env, capture_output=True, text=True)

    done = script("retain", "target", "uld", "gd_1e-4")
    assert done.returncode == 0, done.stderr[-3000:]
    reference = load_eval_log(out / "retain")
    for name in ("target", "uld/eval", "gd_1e-4/eval"):
        summary = json.loads((out / name / "TOFU_SUMMARY.json").read_text())
        log = load_eval_log(out / name)
        assert len(log["forget_Q_A_Prob"]["value_by_index"]) == 40  # all of forget01
        assert len(log["retain_Q_A_Prob"]["value_by_index"]) == 100  # --max-samples 100
        expected = ks_2samp(tr_scores(log), tr_scores(reference)).pvalue
        assert summary["forget_quality"] == pytest.approx(expected, rel=1e-12)
    uld = json.loads((out / "uld" / "run.json").read_text())
    assert uld["augmentation"]["questions"] == 40 and uld["epoch_choice"] == {"rule": "last", "epoch": 4.0}
    seen = [json.loads(line) for line in (out / "uld" / "train_data.jsonl").read_text().splitlines()]
    assert sum(r["part"] == "augment_forget" for r in seen) == uld["augmentation"]["paraphrased_answers"]
    gd = json.loads((out / "gd_1e-4" / "run.json").read_text())
    assert gd["train"]["lr"] == 1e-4 and gd["train"]["epochs"] == 5
    again = script("target")
    assert again.returncode == 0 and "done, skipped" in again.stdout
