"""Bad input through the real CLI entry point: one red line naming the problem, exit code 2, no
traceback, and nothing left behind in the output's place.

Cases run `unlearnkit.cli.main` in this process with a patched argv (the same error boundary as the
`unlearn` script; a subprocess per case would cost the imports each time); one case checks
`python -m unlearnkit.cli` in a subprocess. Most fail before any model work.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import read_jsonl, run_cli, write_jsonl

from unlearnkit.errors import UnlearnError


def assert_refused(code: int, err: str, *needles: str) -> None:
    """Exit code 2 and one `error:` line that names the problem."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    error_lines = [line for line in lines if line.startswith("error:")]
    assert len(error_lines) == 1, err
    for needle in needles:
        assert needle in error_lines[0], err


def assert_nothing_left(out: Path) -> None:
    """No output dir and no temp sibling (.<out>.partial-*, .<out>.tmp...)."""
    assert not out.exists()
    assert not [p.name for p in out.parent.glob(f".{out.name}*")]


@pytest.fixture
def data(micro_world, tmp_path) -> Path:
    """A private copy of the micro world's split files, free to corrupt."""
    return Path(shutil.copytree(micro_world.data_dir, tmp_path / "data"))


def edit_first(path: Path, **changes) -> None:
    rows = read_jsonl(path)
    rows[0].update(changes)
    rows[0] = {k: v for k, v in rows[0].items() if v is not None}
    write_jsonl(path, rows)


def run_args(micro_world, data: Path, out: Path, *extra: str, method: str = "ga") -> list[str]:
    return ["run", "--method", method, "--model", micro_world.target_dir, "--data", data,
            "--forget", "forget01", "--out", out, "--no-eval", "train.max_steps=1", *extra]


# ----------------------------------------------------------------------------------- data files

def _malformed_json(d: Path) -> None:
    lines = (d / "forget01.jsonl").read_text().splitlines()
    lines[1] = lines[1][:-5]
    (d / "forget01.jsonl").write_text("\n".join(lines) + "\n")


def _missing_field(d: Path) -> None:
    rows = read_jsonl(d / "forget01.jsonl")
    del rows[2]["answer"]
    write_jsonl(d / "forget01.jsonl", rows)


def _overlap(d: Path) -> None:
    forget = read_jsonl(d / "forget01.jsonl")
    write_jsonl(d / "retain99.jsonl", read_jsonl(d / "retain99.jsonl") + forget[:1])


def _not_utf8(d: Path) -> None:
    (d / "forget01.jsonl").write_bytes(b'{"question": "\xff\xfe", "answer": "a"}\n')


DATA_CASES = {
    "malformed_json": (_malformed_json, ("forget01.jsonl line 2", "invalid JSON")),
    "missing_field": (_missing_field, ("line 3", "'answer' is missing")),
    "empty_field": (lambda d: edit_first(d / "forget01.jsonl", answer="  "),
                    ("'answer'", "non-empty string")),
    "perturbed_not_list": (lambda d: edit_first(d / "forget01_perturbed.jsonl", perturbed_answer="x"),
                           ("'perturbed_answer'", "list")),
    "empty_forget_set": (lambda d: (d / "forget01.jsonl").write_text(""), ("forget01.jsonl", "empty")),
    "forget_retain_overlap": (_overlap, ("forget01 and retain99 overlap", "retain must exclude forget")),
    "perturbed_split_missing": (lambda d: (d / "forget01_perturbed.jsonl").unlink(),
                                ("no split 'forget01_perturbed'",)),
    "not_utf8": (_not_utf8, ("not UTF-8",)),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_file(case, micro_world, data, tmp_path, capsys):
    corrupt, needles = DATA_CASES[case]
    corrupt(data)
    out = tmp_path / "out"
    code, err = run_cli(capsys, *run_args(micro_world, data, out))
    assert_refused(code, err, *needles)
    assert_nothing_left(out)


# ----------------------------------------------------------------------------- flags and configs

FLAG_CASES = {
    "split_name_not_forget": (["--forget", "forgetX"], ("'forgetX' is not a forget split name",)),
    "split_name_unknown": (["--forget", "forget20"], ("no split 'forget20'", "available:")),
    "data_dir_missing": (["--data", "/nonexistent/tofu"], ("/nonexistent/tofu does not exist",)),
    "unknown_method": (["--method", "gradascent"], ("unknown method 'gradascent'", "known methods")),
    "unknown_config_key": (["train.lrr=1e-3"], ("unknown config key 'train.lrr'", "did you mean 'train.lr'")),
    "wrong_type": (["train.batch_size=abc"], ("'train.batch_size' expects int",)),
    "lr_not_positive": (["--lr", "0"], ("train.lr must be > 0",)),
    "unknown_method_param": (["method.params.betta=1"], ("unknown parameter(s) ['betta'] for method ga",)),
    "unknown_lora_key": (["train.lora.rank=8"], ("unknown LoRA setting(s) ['rank']",)),
    "uld_weight_negative": (["--method", "uld", "method.params.weight=-0.5"], ("w=-0.5", ">= 0")),
    "uld_filter_zero": (["--method", "uld", "method.params.filter_factor=0"], ("f=0", "(0, 1]")),
    "uld_filter_above_one": (["--method", "uld", "method.params.filter_factor=1.5"], ("f=1.5", "(0, 1]")),
    "uld_k_above_layers": (["--method", "uld", "method.params.num_layers=5"],
                           ("num_layers=5", "N=4", "1..4")),
    "uld_k_zero": (["--method", "uld", "method.params.num_layers=0"], ("num_layers=0", ">= 1")),
    "uld_k_negative": (["--method", "uld", "method.params.num_layers=-1"], ("num_layers=-1", ">= 1")),
    "uoe_on_dense_model": (["method.name=uoe_ga"], ("MoE",)),
    "max_length_below_prompt": (["data.max_length=3"], ("max_length=3 is shorter than the prompt",)),
    "reference_not_eval_log": (["--reference", "/nonexistent/ref", "eval.enabled=true"],
                               ("reference /nonexistent/ref", "neither")),
    "model_dir_missing": (["--model", "/nonexistent/model"], ("'/nonexistent/model' is neither",)),
    "gguf_file_missing": (["--model", "/nonexistent/model.gguf"], ("GGUF file /nonexistent/model.gguf",
                                                                   "not found")),
}


@pytest.mark.parametrize("case", list(FLAG_CASES))
def test_bad_flag_or_value(case, micro_world, tmp_path, capsys):
    extra, needles = FLAG_CASES[case]
    out = tmp_path / "out"
    # a repeated --flag overrides the earlier one, so each case replaces a base flag by appending it
    code, err = run_cli(capsys, *run_args(micro_world, micro_world.data_dir, out, *extra))
    assert_refused(code, err, *needles)
    assert_nothing_left(out)


def test_yaml_syntax_error(micro_world, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  lr: [1e-3\n  epochs: 2\n")
    out = tmp_path / "out"
    code, err = run_cli(capsys, "run", config, "--model", micro_world.target_dir, "--data",
                        micro_world.data_dir, "--out", out)
    assert_refused(code, err, "bad.yaml line", "invalid YAML")
    assert_nothing_left(out)


def test_config_file_missing(tmp_path, capsys):
    code, err = run_cli(capsys, "run", tmp_path / "nope.yaml", "--out", tmp_path / "out")
    assert_refused(code, err, "nope.yaml does not exist")


# -------------------------------------------------------------------------------- output and model

def test_out_not_empty_without_overwrite(micro_world, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = run_cli(capsys, *run_args(micro_world, micro_world.data_dir, out))
    assert_refused(code, err, f"{out} is not empty", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not list(tmp_path.glob(".out*"))


def test_out_not_writable(micro_world, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    out = blocker / "sub" / "out"
    code, err = run_cli(capsys, *run_args(micro_world, micro_world.data_dir, out))
    assert_refused(code, err, "cannot write", str(blocker))
    assert blocker.read_text() == "a file, not a directory"


def test_out_is_a_file(micro_world, tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("x")
    code, err = run_cli(capsys, *run_args(micro_world, micro_world.data_dir, out))
    assert_refused(code, err, "is not a directory")
    assert out.read_text() == "x"


@pytest.mark.parametrize("target", ["data", "world"])
def test_out_would_replace_an_input(target, micro_world, tmp_path, capsys):
    """--out is replaced whole at the end: it may not be (or contain) the model or the data."""
    world = Path(shutil.copytree(micro_world.data_dir, tmp_path / "world" / "data")).parent
    out = world / "data" if target == "data" else world
    before = sorted(p.name for p in (world / "data").iterdir())
    code, err = run_cli(capsys, *run_args(micro_world, world / "data", out, "--overwrite"))
    assert_refused(code, err, f"--out {out} would replace the --data input")
    assert sorted(p.name for p in (world / "data").iterdir()) == before


def test_pickle_only_checkpoint(micro_world, tmp_path, capsys):
    model = tmp_path / "pickled"
    model.mkdir()
    shutil.copy(micro_world.target_dir / "config.json", model)
    (model / "pytorch_model.bin").write_bytes(b"\x80\x04not loaded")
    out = tmp_path / "out"
    code, err = run_cli(capsys, *run_args(micro_world, micro_world.data_dir, out, "--model", model))
    assert_refused(code, err, "pickle", "safetensors")
    assert_nothing_left(out)


@pytest.fixture(scope="module")
def uld_artifact(micro_world, tmp_path_factory) -> Path:
    """An (untrained) ULD artifact of the micro target: enough to check what loading it refuses."""
    from unlearnkit.methods.uld.assistant import build_assistant
    from unlearnkit.methods.uld.model import ULDModel
    from unlearnkit.models.loading import load_model_and_tokenizer

    target, tok = load_model_and_tokenizer(micro_world.target_dir)
    uld = ULDModel.from_target(target, build_assistant(target, 1), target_path=str(micro_world.target_dir))
    out = tmp_path_factory.mktemp("uld") / "artifact"
    uld.save_pretrained(out, tokenizer=tok)
    return out


def test_artifact_tokenizer_differs_from_target(micro_world, uld_artifact, tmp_path, capsys):
    other = Path(shutil.copytree(micro_world.target_dir, tmp_path / "other-target"))
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    if isinstance(vocab, dict):  # swap two token ids: same weights, different tokenizer
        (a, ia), (b, ib) = list(vocab.items())[10:12]
        vocab[a], vocab[b] = ib, ia
    else:
        vocab[10], vocab[11] = vocab[11], vocab[10]
    (other / "tokenizer.json").write_text(json.dumps(tok))
    code, err = run_cli(capsys, "generate", "Who?", "--model", uld_artifact, "--target", other)
    assert_refused(code, err, "different tokenizer", "--target")


def test_artifact_with_pickle_adapter_only(uld_artifact, tmp_path, capsys):
    art = Path(shutil.copytree(uld_artifact, tmp_path / "artifact"))
    (art / "adapter_model.safetensors").rename(art / "adapter_model.bin")
    code, err = run_cli(capsys, "generate", "Who?", "--model", art)
    assert_refused(code, err, "no adapter_model.safetensors", "pickle")


def test_debug_shows_traceback(micro_world, tmp_path, capsys):
    args = run_args(micro_world, micro_world.data_dir, tmp_path / "out", "--method", "nope")
    with pytest.raises(UnlearnError, match="unknown method 'nope'"):
        run_cli(capsys, "--debug", *args)


def test_python_dash_m_entry_point(micro_world, data, tmp_path):
    """`python -m unlearnkit.cli` goes through the same boundary: exit 2, one line, no traceback."""
    _malformed_json(data)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    args = [sys.executable, "-m", "unlearnkit.cli", *map(str, run_args(micro_world, data, out))]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert_refused(proc.returncode, proc.stderr, "invalid JSON")
    assert_nothing_left(out)
