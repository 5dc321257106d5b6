"""The error contract on every command (issue 23): each bad input ends with exit code 2, exactly one
`error:` line, no traceback, and leaves the output's parent and every input byte-for-byte unchanged
(both trees are hashed before and after). The cases cover the seven kinds the issue lists:

    usage      command-line mistakes (typer's own vendored click exceptions included)
    inputs     --out pointing at, into or over an input; config files redirecting output
    out        an output that cannot be written, found before any work
    checkpoint a validation that fails after the model loads leaves no OUT.checkpoints/
    lower      lower-layer failures turned into one line (vocab, remote code, schemas, encodings, ...)
    numbers    inconsistencies that used to give silently wrong numbers
    resources  work that would train nothing or read without bound

Most cases fail before any model loads; all run in this process through the real entry point.
A subprocess test sends SIGINT to a training run (exit 130, "interrupted", checkpoints kept and named).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import read_jsonl, run_cli, write_jsonl

from unlearnkit.training.checkpoints import CHECKPOINT_MARKER

# ------------------------------------------------------------------------------------------- helpers


def tree_hash(root: Path) -> dict[str, str]:
    """Every entry under root (symlinks not followed) -> file sha256, 'dir', or 'link:<target>'."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                state[rel] = f"link:{os.readlink(path)}"
            elif path.is_dir():
                state[rel] = "dir"
            else:
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def assert_one_error(code: int, err: str, needles: tuple[str, ...]) -> None:
    """Exit 2, no traceback, exactly one `error:` line, naming the problem."""
    assert code == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0], err


@dataclass
class Ctx:
    """Paths a case builds its command from: W (a private micro world), E (an eval dir of W's target),
    tmp (this case's directory), out (tmp/parent/out; parent holds a file so it is not empty)."""

    W: Path
    E: Path
    tmp: Path

    @property
    def out(self) -> Path:
        return self.tmp / "parent" / "out"

    def inputs(self) -> Path:
        path = self.tmp / "inputs"
        path.mkdir(exist_ok=True)
        return path

    def copy(self, name: str) -> Path:
        """A private copy of W/<name> (or of E when name == 'eval') under tmp/inputs, free to corrupt."""
        src = self.E if name == "eval" else self.W / name
        return Path(shutil.copytree(src, self.inputs() / name))

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.inputs() / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def run(self, *extra, method: str = "ga", data: Path | None = None, out: Path | None = None) -> list:
        return ["run", "--method", method, "--model", self.W / "target", "--data", data or self.W / "data",
                "--forget", "forget01", "--out", out or self.out, "--no-eval", "train.max_steps=1",
                "train.warmup_ratio=0", *extra]  # one step at full lr: a real update

    def edit_log(self, change: Callable[[dict], None]) -> Path:
        """A copy of E's TOFU_EVAL.json with `change` applied; returns the file."""
        log = json.loads((self.E / "TOFU_EVAL.json").read_text())
        change(log)
        return self.file("TOFU_EVAL.json", json.dumps(log))


CASES: dict[str, tuple[str, Callable[[Ctx], list], tuple[str, ...]]] = {}


def case(kind: str, *needles: str):
    """Register a bad-input case: builds its argv from a Ctx; `needles` must be in the error line."""
    def register(build):
        CASES[build.__name__] = (kind, build, needles)
        return build
    return register


# ------------------------------------------------------------------------ 1. command-line mistakes

@case("usage", "No such command 'frobnicate'")
def unknown_command(c):
    return ["frobnicate"]


@case("usage", "No such option: --bogus-flag")
def run_unknown_flag(c):
    return c.run("--bogus-flag")


@case("usage", "--max-samples")
def eval_max_samples_zero(c):
    return ["eval", "--model", c.W / "target", "--data", c.W / "data", "--out", c.out, "--max-samples", "0"]


@case("usage", "Missing option", "--data")
def finetune_missing_required(c):
    return ["finetune", "--model", c.W / "target", "--out", c.out]


@case("usage", "--batch-size")
def eval_batch_size_not_int(c):
    return ["eval", "--model", c.W / "target", "--data", c.W / "data", "--out", c.out, "--batch-size", "abc"]


@case("usage", "Missing")
def generate_without_question(c):
    return ["generate", "--model", c.W / "target"]


@case("usage", "Missing")
def report_without_dirs(c):
    return ["report", "--out", c.out / "r.md"]


@case("usage", "--epochs")
def bench_epochs_zero(c):
    return ["bench", "--out", c.out, "--epochs", "0"]


@case("usage", "Missing option", "--out")
def prepare_without_out(c):
    return ["prepare", "--preset", "micro"]


@case("usage", "--top")
def experts_top_not_int(c):
    return ["experts", "--model", c.W / "target", "--data", c.W / "data", "--top", "x"]


@case("usage", "--seed")
def run_seed_not_int(c):
    return c.run("--seed", "one")


@case("usage", "--recompute")
def eval_recompute_without_value(c):
    return ["eval", "--recompute"]


@case("usage", "--lora-r")
def finetune_negative_lora_rank(c):
    return ["finetune", "--model", c.W / "target", "--data", c.W / "data", "--out", c.out, "--lora-r", "-1"]


@case("usage", "No such option: --verbose")
def root_unknown_option(c):
    return ["--verbose", "run"]


@case("usage", "--decode-batch")
def bench_decode_batch_not_ints(c):
    return ["bench", "--out", c.out, "--decode-batch", "1,x"]


# ------------------------------------------------------------------------ 2. inputs never destroyed

@case("inputs", "would replace the --model input")
def finetune_out_is_the_world(c):
    return ["finetune", "--model", c.W / "target", "--data", c.W / "data", "--split", "forget01",
            "--out", c.W, "--overwrite"]


@case("inputs", "would replace the --data input")
def eval_out_is_the_data(c):
    return ["eval", "--model", c.W / "target", "--data", c.W / "data", "--out", c.W / "data"]


@case("inputs", "is inside the --data input")
def eval_out_inside_the_data(c):
    return ["eval", "--model", c.W / "target", "--data", c.W / "data", "--out", c.W / "data" / "eval"]


@case("inputs", "is not empty", "--overwrite")
def eval_out_is_an_existing_run(c):
    run = c.out
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("method: {name: ga}\n")
    return ["eval", "--model", c.W / "target", "--data", c.W / "data", "--out", run]


@case("inputs", "bench --set override 'out=")
def bench_set_out(c):
    elsewhere = c.inputs() / "precious"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    return ["bench", "--out", c.out, "--preset", "micro", "--set", f"out={elsewhere}"]


@case("inputs", "is not empty", "--overwrite")
def yaml_out_with_overwrite(c):
    victim = c.inputs() / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    config = c.file("run.yaml", f"out: {victim}\noverwrite: true\n")
    return ["run", config, "--method", "ga", "--model", c.W / "target", "--data", c.W / "data",
            "--forget", "forget01", "--no-eval", "train.max_steps=1"]


@case("inputs", "both --out", "keep one")
def positional_out_conflicts_with_flag(c):
    return c.run(f"out={c.tmp / 'parent' / 'other'}")


@case("inputs", "pass --overwrite as a flag")
def positional_overwrite(c):
    return c.run("overwrite=true")


@case("inputs", "would replace the --model input")
def run_out_is_the_model(c):
    return c.run("--overwrite", out=c.W / "target")


@case("inputs", "would replace the --reference input")
def run_out_is_the_reference(c):
    return c.run("--reference", c.W / "retain99", "eval.enabled=true", "--overwrite", out=c.W / "retain99")


@case("inputs", "is inside the --model input")
def finetune_out_inside_the_model(c):
    return ["finetune", "--model", c.W / "target", "--data", c.W / "data", "--out", c.W / "target" / "ft"]


@case("inputs", "is inside the --tokenizer input")
def eval_out_inside_the_tokenizer(c):
    return ["eval", "--model", "tiny", "--tokenizer", c.W / "tokenizer", "--data", c.W / "data",
            "--out", c.W / "tokenizer" / "eval"]


@case("inputs", "is inside the run input")
def report_out_inside_an_eval_dir(c):
    return ["report", c.E, "--out", c.E / "report.md"]


@case("inputs", "names no file")
def report_out_names_a_directory(c):
    return ["report", c.E, "--out", c.tmp / "x.md" / ".."]


@case("inputs", "demo override 'out=")
def demo_override_out(c):
    return ["demo", "--out", c.out, "--preset", "micro", f"out={c.W}"]


@case("inputs", "is inside the --data input")
def mcq_out_inside_the_data(c):
    return ["mcq", "--model", c.W / "target", "--data", c.W / "data", "--out", c.W / "data" / "mcq"]


@case("inputs", "would replace the --model input")
def experts_out_is_the_model(c):
    return ["experts", "--model", c.W / "target", "--data", c.W / "data", "--out", c.W / "target"]


@case("inputs", "is not empty")
def prepare_into_a_data_dir(c):
    return ["prepare", "--preset", "micro", "--out", c.W / "data"]


@case("inputs", "would replace the --recompute input")
def recompute_out_holds_the_log(c):
    return ["eval", "--recompute", c.E / "TOFU_EVAL.json", "--out", c.E]


@case("inputs", "would replace the --data input")
def run_out_is_a_symlink_to_the_data(c):
    link = c.tmp / "parent" / "link"
    link.symlink_to(c.W / "data")
    return c.run("--overwrite", out=link)


@case("inputs", "is inside the world input")
def run_out_inside_the_world(c):
    return c.run(out=c.W / "runs" / "ga")


@case("inputs", "is not empty")
def experts_out_holds_other_files(c):
    c.out.mkdir(parents=True)
    (c.out / "notes.txt").write_text("mine")
    return ["experts", "--model", c.W / "target", "--data", c.W / "data", "--out", c.out]


# ------------------------------------------------------- 3. outputs checked before any work is done

def _blocker(c: Ctx) -> Path:
    blocker = c.tmp / "parent" / "blocker"
    blocker.write_text("a file")
    return blocker


@case("out", "is not a directory")
def eval_out_is_a_file(c):
    return ["eval", "--model", c.W / "target", "--data", c.W / "data", "--out", _blocker(c)]


@case("out", "is not a directory")
def finetune_out_is_a_file(c):
    return ["finetune", "--model", c.W / "target", "--data", c.W / "data", "--out", _blocker(c)]


@case("out", "is not a directory")
def prepare_out_is_a_file(c):
    return ["prepare", "--preset", "micro", "--out", _blocker(c)]


@case("out", "cannot write under", "it is a file")
def report_out_under_a_file(c):
    return ["report", c.E, "--out", _blocker(c) / "sub" / "report.md"]


@case("out", "cannot write under", "it is a file")
def eval_out_under_a_file(c):
    return ["eval", "--model", c.W / "target", "--data", c.W / "data", "--out", _blocker(c) / "sub"]


@case("out", "cannot write under", "it is a file")
def finetune_out_under_a_file(c):
    return ["finetune", "--model", c.W / "target", "--data", c.W / "data", "--out", _blocker(c) / "m"]


@case("out", "is not a directory")
def mcq_out_is_a_file(c):
    return ["mcq", "--model", c.W / "target", "--data", c.W / "data", "--out", _blocker(c)]


@case("out", "is not a directory")
def experts_out_is_a_file(c):
    return ["experts", "--model", c.W / "target", "--data", c.W / "data", "--out", _blocker(c)]


@case("out", "is not a directory")
def bench_out_is_a_file(c):
    return ["bench", "--preset", "micro", "--out", _blocker(c)]


@case("out", "is a directory")
def report_out_is_a_directory(c):
    (c.tmp / "parent" / "report.md").mkdir()
    return ["report", c.E, "--out", c.tmp / "parent" / "report.md"]


@case("out", "symlink loop")
def run_out_is_a_symlink_loop(c):
    loop = c.tmp / "parent" / "loop"
    loop.symlink_to(loop)
    return c.run(out=loop)


@case("out", "symlink loop")
def eval_out_is_a_symlink_loop(c):
    loop = c.tmp / "parent" / "loop"
    loop.symlink_to(loop)
    return ["eval", "--model", c.W / "target", "--data", c.W / "data", "--out", loop]


# -------------------------------------------- 4. failed validations leave no OUT.checkpoints/ behind

@case("checkpoint", "num_layers=999", "1..4")
def uld_assistant_too_deep(c):
    return c.run("method.params.num_layers=999", method="uld")


@case("checkpoint", "MoE")
def uoe_on_a_dense_model(c):
    return c.run("method.name=uoe_ga")


@case("checkpoint", "not UTF-8")
def run_reference_is_binary(c):
    return c.run("--reference", c.file("ref.json", b"\x89PNG\r\n\x1a\n\x00\xff"), "eval.enabled=true")


@case("checkpoint", "is not a TOFU eval log")
def run_reference_is_a_list(c):
    return c.run("--reference", c.file("ref.json", "[1, 2, 3]"), "eval.enabled=true")


# ------------------------------------------------------------ 5. lower-layer failures as one line

@case("lower", "tokenizer has", "embedding only")
def vocab_smaller_than_tokenizer(c):
    from transformers import AutoTokenizer

    model = c.copy("target")
    tok = AutoTokenizer.from_pretrained(model)
    tok.add_tokens([f"extra{i}" for i in range(50)])
    tok.save_pretrained(model)
    return ["generate", "Who?", "--model", model]


@case("lower", "needs its own code", "--trust-remote-code")
def model_needs_remote_code(c):
    model = c.copy("target")
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="my_own_llm", auto_map={"AutoModelForCausalLM": "modeling_mine.MyLLM"})
    (model / "config.json").write_text(json.dumps(config))
    return ["generate", "Who?", "--model", model]


@case("lower", "not UTF-8")
def eval_reference_is_binary(c):
    return ["eval", "--recompute", c.E / "TOFU_EVAL.json", "--reference", c.file("r.json", b"\xff\xfe\x00")]


@case("lower", "is not a TOFU eval log")
def eval_reference_wrong_shape(c):
    return ["eval", "--recompute", c.E / "TOFU_EVAL.json", "--reference", c.file("r.json", '"just text"')]


@case("lower", "forget_Q_A_Prob[0].prob", "not a number")
def recompute_log_holds_a_string(c):
    def change(log):
        log["forget_Q_A_Prob"]["value_by_index"]["0"]["prob"] = "high"
    return ["eval", "--recompute", c.edit_log(change)]


@case("lower", "metric 'forget_Q_A_ROUGE' is list")
def recompute_metric_not_an_object(c):
    def change(log):
        log["forget_Q_A_ROUGE"] = [1, 2]
    return ["eval", "--recompute", c.edit_log(change)]


@case("lower", "not UTF-8", "byte")
def mcq_file_not_utf8(c):
    return ["mcq", "--model", c.W / "target", "--data",
            c.file("bio.jsonl", b'{"question": "caf\xe9", "choices": ["a", "b"], "answer": 0}\n')]


@case("lower", "not UTF-8", "byte")
def experts_data_not_utf8(c):
    return ["experts", "--model", c.W / "target", "--data", c.file("forget.jsonl", b'{"text": "\xff"}\n')]


@case("lower", "beta=0", "> 0")
def npo_beta_zero(c):
    return c.run("method.params.beta=0", method="npo")


@case("lower", "beta=-1", "> 0")
def dpo_beta_negative(c):
    return c.run("method.params.beta=-1", method="dpo")


@case("lower", "bad.yaml line 2: not UTF-8 text (byte 23)")
def config_file_not_utf8(c):
    return ["run", c.file("bad.yaml", b"train:\n  lr: 1e-3 # caf\xe9\n"), "--out", c.out]


@case("lower", "invalid JSON")
def recompute_log_truncated(c):
    text = (c.E / "TOFU_EVAL.json").read_text()
    return ["eval", "--recompute", c.file("TOFU_EVAL.json", text[: len(text) // 2])]


@case("lower", "not readable JSON")
def model_config_not_json(c):
    model = c.copy("target")
    (model / "config.json").write_text("{model_type: llama")
    return ["generate", "Who?", "--model", model]


# ------------------------------------------------------------------ 6. no silently wrong numbers

@case("numbers", "forget01 has 4 rows but forget01_perturbed 3")
def run_perturbed_split_a_row_short(c):
    data = c.copy("data")
    write_jsonl(data / "forget01_perturbed.jsonl", read_jsonl(data / "forget01_perturbed.jsonl")[:-1])
    return c.run(data=data)


@case("numbers", "forget01 has 4 rows but forget01_perturbed 3")
def eval_perturbed_split_a_row_short(c):
    data = c.copy("data")
    write_jsonl(data / "forget01_perturbed.jsonl", read_jsonl(data / "forget01_perturbed.jsonl")[:-1])
    return ["eval", "--model", c.W / "target", "--data", data, "--forget", "forget01", "--out", c.out]


@case("numbers", "ask different questions")
def perturbed_split_out_of_order(c):
    data = c.copy("data")
    write_jsonl(data / "forget01_perturbed.jsonl", read_jsonl(data / "forget01_perturbed.jsonl")[::-1])
    return c.run(data=data)


@case("numbers", "no per-sample scores")
def reference_without_truth_ratio_scores(c):
    def change(log):
        for entry in log["forget_truth_ratio"]["value_by_index"].values():
            entry["score"] = None
    return ["eval", "--recompute", c.E / "TOFU_EVAL.json", "--reference", c.edit_log(change)]


@case("numbers", "non-finite")
def reference_with_nan_truth_ratio(c):
    def change(log):
        next(iter(log["forget_truth_ratio"]["value_by_index"].values()))["score"] = math.nan
    return ["eval", "--recompute", c.E / "TOFU_EVAL.json", "--reference", c.edit_log(change)]


@case("numbers", "forget_Q_A_Prob came out nan")
def recompute_nan_aggregate(c):
    def change(log):
        log["forget_Q_A_Prob"]["value_by_index"]["0"]["prob"] = math.nan
    return ["eval", "--recompute", c.edit_log(change)]


@case("numbers", "has no per-sample forget_truth_ratio")
def reference_is_a_log_of_other_metrics(c):
    def change(log):
        del log["forget_truth_ratio"]
    return ["eval", "--recompute", c.E / "TOFU_EVAL.json", "--reference", c.edit_log(change)]


# ----------------------------------------------------------------------------------- 7. resources

@case("resources", "--epochs 0", "> 0")
def finetune_zero_epochs(c):
    return ["finetune", "--model", c.W / "target", "--data", c.W / "data", "--split", "forget01",
            "--out", c.out, "--epochs", "0"]


@case("resources", "--epochs -1", "> 0")
def finetune_negative_epochs(c):
    return ["finetune", "--model", c.W / "target", "--data", c.W / "data", "--split", "forget01",
            "--out", c.out, "--epochs", "-1"]


@case("resources", "train.epochs must be > 0")
def run_zero_epochs(c):
    return ["run", "--method", "ga", "--model", c.W / "target", "--data", c.W / "data", "--forget",
            "forget01", "--out", c.out, "--no-eval", "--epochs", "0"]


@case("resources", "max_length=8 is shorter than the prompt")
def finetune_megabyte_question(c):
    data = c.copy("data")
    first = read_jsonl(data / "forget01.jsonl")
    first[0]["question"] = "why " * 500_000  # 2 MB: refused without tokenizing all of it
    write_jsonl(data / "forget01.jsonl", first)
    return ["finetune", "--model", c.W / "target", "--data", data, "--split", "forget01", "--out", c.out,
            "--max-length", "8"]


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def world(micro_world, tmp_path_factory) -> Path:
    """A private copy of the micro world's data, tokenizer, target and retain models."""
    root = tmp_path_factory.mktemp("contract") / "world"
    for name in ("data", "tokenizer", "target", "retain99", "retain90"):
        shutil.copytree(micro_world.root / name, root / name)
    shutil.copy(micro_world.root / "prepare.json", root)
    return root


@pytest.fixture(scope="module")
def eval_dir(world) -> Path:
    """A real evaluation of W's target on forget01 (2 rows per split, 4 new tokens), beside W."""
    from unlearnkit.eval import tofu
    from unlearnkit.models.loading import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(world / "target")
    summary, log = tofu.evaluate_tofu(model, tok, world / "data", "forget01", None, 2, 4, 4)
    out = world.parent / "evals" / "target"
    tofu.write_eval(out, summary, log, meta={"name": "target", "forget": "forget01"})
    return out


# ---------------------------------------------------------------------------------------- the tests

def test_the_suite_covers_every_kind_with_60_cases():
    kinds = {kind for kind, _, _ in CASES.values()}
    assert kinds == {"usage", "inputs", "out", "checkpoint", "lower", "numbers", "resources"}
    assert len(CASES) >= 60, len(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, world, eval_dir, tmp_path, capsys):
    kind, build, needles = CASES[name]
    (tmp_path / "parent").mkdir()
    (tmp_path / "parent" / "sibling.txt").write_text("untouched")
    argv = build(Ctx(world, eval_dir, tmp_path))
    before = {root: tree_hash(root) for root in (world.parent, tmp_path)}
    code, err = run_cli(capsys, *argv)
    assert_one_error(code, err, needles)
    for root, state in before.items():
        assert tree_hash(root) == state, f"{kind}/{name} changed {root}"


def test_a_corrected_command_runs_after_a_failed_validation(world, tmp_path, capsys):
    """The failed ULD validation left no OUT.checkpoints/, so fixing the value is enough."""
    c = Ctx(world, world, tmp_path)
    code, err = run_cli(capsys, *c.run("method.params.num_layers=999", method="uld"))
    assert code == 2, err
    code, err = run_cli(capsys, *c.run("method.params.num_layers=1", method="uld"))
    assert code == 0, err
    assert (c.out / "model").is_dir() and not c.out.with_name("out.checkpoints").exists()


def test_recompute_notes_missing_metrics_and_samples(eval_dir, tmp_path, capsys):
    """Dropped retain metrics or per-sample entries give a loud warning, not a quietly different number."""
    log = json.loads((eval_dir / "TOFU_EVAL.json").read_text())
    for key in [k for k in log if k.startswith("retain_")]:
        del log[key]
    del log["ra_Q_A_ROUGE"]["value_by_index"]["0"]
    path = tmp_path / "TOFU_EVAL.json"
    path.write_text(json.dumps(log))
    code, err = run_cli(capsys, "eval", "--recompute", path)
    assert code == 0, err
    assert "warning: model_utility not computed: the log lacks retain_Q_A_Prob" in " ".join(err.split())
    assert "ra: per-sample entries missing (ra_Q_A_ROUGE lacks 1 of 2)" in " ".join(err.split())


def test_recompute_writes_the_summary_into_out(eval_dir, tmp_path, capsys):
    from unlearnkit.eval import tofu

    out = tmp_path / "summary"
    code, err = run_cli(capsys, "eval", "--recompute", eval_dir / "TOFU_EVAL.json", "--out", out)
    assert code == 0, err
    expected = tofu.recompute(tofu.load_eval_log(eval_dir))
    assert json.loads((out / "TOFU_SUMMARY.json").read_text()) == pytest.approx(expected)
    assert "| forget_Q_A_Prob |" in (out / "TOFU_SUMMARY.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["TOFU_SUMMARY.json", "TOFU_SUMMARY.md"]


def test_oversized_answer_is_cut_before_tokenizing(world):
    """A 5 MB answer never reaches the tokenizer whole; the example is counted as truncated."""
    from unlearnkit.data.formatting import MAX_CHARS_PER_TOKEN, TruncationCounter, encode_qa
    from unlearnkit.models.loading import load_tokenizer

    tok = load_tokenizer(world / "tokenizer")
    seen: list[int] = []

    class Recording:
        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, text, **kwargs):
            seen.append(len(text))
            return tok(text, **kwargs)

    counter = TruncationCounter()
    enc = encode_qa(Recording(), "Who is he?", "word " * 1_000_000, max_length=32, counter=counter)
    assert max(seen) <= 32 * MAX_CHARS_PER_TOKEN + 1
    assert len(enc["input_ids"]) == 32 and counter.truncated == 1


def test_sigint_interrupts_keeps_and_names_checkpoints_then_pickle_resume_is_refused(world, tmp_path,
                                                                                      capsys):
    """Ctrl-C mid-training: exit 130, one 'interrupted' line naming the kept checkpoints, no output and
    no temp dir. Then a checkpoint doctored to hold a pickle is refused on --resume, never unpickled."""
    out = tmp_path / "run"
    args = ["run", "--method", "ga", "--model", world / "target", "--data", world / "data", "--forget",
            "forget01", "--out", out, "--no-eval", "train.max_steps=100000", "train.save_strategy=steps",
            "train.save_steps=1", "train.batch_size=2", "train.grad_accum=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "unlearnkit.cli", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoints = tmp_path / "run.checkpoints"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob(f"checkpoint-*/{CHECKPOINT_MARKER}")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1 and f"checkpoints kept in {checkpoints}" in " ".join(err.split()), err
    assert not out.exists() and not list(tmp_path.glob(".run.partial-*"))

    # the newest *complete* checkpoint: SIGINT may land while the next one is being written
    newest = max((m.parent for m in checkpoints.glob(f"checkpoint-*/{CHECKPOINT_MARKER}")),
                 key=lambda p: int(p.name.split("-")[1]))
    for other in checkpoints.glob("checkpoint-*"):
        if other != newest:
            shutil.rmtree(other)
    rng = next(newest.glob("rng_state*.pth"))
    rng.write_bytes(pickle.dumps(os.getcwd))  # a global reference: what weights_only refuses to load
    before = tree_hash(tmp_path)
    code, err = run_cli(capsys, *args, "--resume")
    assert_one_error(code, err, ("holds a pickle", "without --resume"))
    assert "weights_only" not in err
    assert tree_hash(tmp_path) == before


def test_oversized_record_is_cut_and_said_on_the_console(world, tmp_path, capsys):
    """A 1 MB answer trains on its first max_length tokens; the console says how many rows were cut."""
    c = Ctx(world, world, tmp_path)
    data = c.copy("data")
    forget = read_jsonl(data / "forget01.jsonl")
    forget[0]["answer"] = "word " * 200_000
    write_jsonl(data / "forget01.jsonl", forget)
    code, err = run_cli(capsys, *c.run("data.max_length=64", data=data))
    assert code == 0, err
    assert "1 training examples were cut at data.max_length=64 tokens" in " ".join(err.split())
    assert json.loads((c.out / "run.json").read_text())["truncated"] == 1
