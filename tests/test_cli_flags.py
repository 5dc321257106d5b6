"""One meaning per flag name across commands (issue 20, item 4): renamed flags keep their old spelling
as deprecated aliases with a one-line notice, one seed default, `--reference` takes a retain model
folder or its log in `run` and `eval` alike (and says when it belongs to another forget split), boolean
flags show as flags in help, and `import unlearnkit.cli` loads no torch (the help path stays fast;
benchmarks/cli_startup.py times it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from helpers import run_cli

from unlearnkit.cli import app
from unlearnkit.cli import main as cli_main
from unlearnkit.config import DEFAULT_SEED, RunConfig

COMMANDS = ("run", "eval", "finetune", "generate", "report", "prepare", "bench", "experts", "mcq", "demo")


def help_text(capsys, *args) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli_main([*args, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def option(command: str, flag: str):
    params = typer.main.get_command(app).commands[command].params
    return next(p for p in params if flag in p.opts)


@pytest.mark.parametrize("command", ("", *COMMANDS))
def test_help_shows_boolean_flags_as_flags(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    text = help_text(capsys, *([command] if command else []))
    assert "--help" in text and "<bool>" not in text


def test_one_seed_default_wherever_a_command_trains_or_evaluates():
    assert RunConfig().seed == DEFAULT_SEED  # run's --seed fills train.seed
    for command in ("eval", "finetune", "bench"):
        assert option(command, "--seed").default == DEFAULT_SEED, command


def test_max_samples_means_evaluation_rows_and_bench_defaults_say_kl(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    for command in ("run", "eval", "bench"):
        assert "Evaluate the first N rows" in option(command, "--max-samples").help, command
    for command in ("finetune", "bench"):
        assert option(command, "--max-train-samples").help.startswith("Train on the first N"), command
    assert option("bench", "--methods").default.split(",")[:2] == ["uld", "kl"]
    assert "ga_kl" not in help_text(capsys, "bench")


def test_deprecated_spelling_works_with_a_one_line_notice(micro_world, tmp_path, capsys):
    out = tmp_path / "ft"
    code, err = run_cli(capsys, "finetune", "--model", micro_world.target_dir, "--data",
                        micro_world.data_dir, "--split", "forget01", "--out", out, "--max-samples", "2",
                        "--epochs", "1", "--batch-size", "2", "--allow-no-update")
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("deprecated:")]
    assert notes == ["deprecated: --max-samples is now --max-train-samples; the old spelling will be removed"]
    assert "(2 rows)" in err and (out / "config.json").is_file()


def test_old_and_new_spelling_that_disagree_are_refused(micro_world, tmp_path, capsys):
    code, err = run_cli(capsys, "finetune", "--model", micro_world.target_dir, "--data",
                        micro_world.data_dir, "--out", tmp_path / "ft", "--max-samples", "2",
                        "--max-train-samples", "3")
    assert code == 2 and "error: --max-samples (deprecated) and --max-train-samples disagree" in err


def test_bench_old_eval_spelling_is_an_alias(tmp_path, capsys):
    code, err = run_cli(capsys, "bench", "--out", tmp_path / "b", "--eval-max-samples", "3",
                        "--set", "out=elsewhere")
    assert "deprecated: --eval-max-samples is now --max-samples" in err
    assert code == 2 and "bench --set override 'out=elsewhere'" in err


def test_eval_reference_takes_a_retain_model_folder(micro_world, tmp_path, capsys):
    """The retain model is scored first (into OUT/reference/) and its log gives forget quality."""
    from unlearnkit.eval import tofu

    out = tmp_path / "eval"
    code, err = run_cli(capsys, "eval", "--model", micro_world.target_dir, "--data", micro_world.data_dir,
                        "--forget", "forget01", "--reference", micro_world.retain_dirs["forget01"],
                        "--out", out, "--max-samples", "2", "--max-new-tokens", "4")
    assert code == 0, err
    assert "warning" not in err
    ref = tofu.load_reference(out / "reference")
    log = tofu.load_eval_log(out)
    summary = json.loads((out / "TOFU_SUMMARY.json").read_text())
    assert summary["forget_quality"] == pytest.approx(tofu.forget_quality(log, ref))
    assert len(ref["forget_truth_ratio"]["value_by_index"]) == 2


def test_reference_of_another_forget_split_warns(micro_world, tmp_path, capsys):
    from unlearnkit.pipeline import reference_warning

    retain90 = str(micro_world.retain_dirs["forget10"])
    assert "belongs to forget10, not forget01" in reference_warning(retain90, "forget01")
    assert reference_warning(retain90, "forget10") is None
    code, err = run_cli(capsys, "run", "--method", "ga", "--model", micro_world.target_dir, "--data",
                        micro_world.data_dir, "--forget", "forget01", "--reference", retain90,
                        "--out", tmp_path / "out", "method.params.bogus=1")
    assert code == 2
    assert "warning: --reference" in err and "belongs to forget10, not forget01" in " ".join(err.split())


def test_eval_log_reference_of_another_split_warns(micro_world, tmp_path):
    from unlearnkit.pipeline import reference_warning

    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "TOFU_EVAL.json").write_text("{}")
    (ref / "eval_meta.json").write_text(json.dumps({"forget": "forget05"}))
    assert "belongs to forget05, not forget10" in reference_warning(str(ref), "forget10")


def test_cli_import_loads_no_torch():
    """What keeps `unlearn --help` fast: the command modules import torch/transformers in their bodies."""
    code = "import sys, unlearnkit.cli; print([m for m in ('torch', 'transformers') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent).stdout
    assert out.strip() == "[]"


def test_option_values_are_values_not_yaml(micro_world, tmp_path, capsys, monkeypatch):
    """Issue 22: options reach the config as the CLI typed them. Read as YAML, `no` was false, 2024-01-01
    a date and `a: b` a mapping, so these valid paths were rejected."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "no").symlink_to(micro_world.target_dir, target_is_directory=True)
    (tmp_path / "2024-01-01").symlink_to(micro_world.data_dir, target_is_directory=True)
    code, err = run_cli(capsys, "run", "--method", "ga", "--model", "no", "--data", "2024-01-01",
                        "--forget", "forget01", "--out", "runs/a: b", "--no-eval", "--seed", "3",
                        "train.max_steps=1", "train.warmup_ratio=0")
    assert code == 0, err
    record = json.loads((tmp_path / "runs" / "a: b" / "run.json").read_text())
    assert (record["model"], record["data"], record["seed"]) == ("no", "2024-01-01", 3)
    assert yaml.safe_load((tmp_path / "runs" / "a: b" / "config.yaml").read_text())["out"] == "runs/a: b"


def test_unknown_prepare_preset_lists_every_family_and_writes_nothing(tmp_path, capsys):
    code, err = run_cli(capsys, "prepare", "--preset", "smal", "--out", tmp_path / "w")
    assert code == 2 and "unknown preset 'smal'" in err
    assert all(name in err for name in ("small", "moe-micro", "tofu-smollm2"))
    assert not (tmp_path / "w").exists()


def test_methods_command_lists_every_method_and_each_params_help_and_default(capsys, monkeypatch):
    from unlearnkit.methods import REGISTRY
    from unlearnkit.methods.params import param_table

    def out(*args) -> str:
        monkeypatch.setattr(sys, "argv", ["unlearn", "methods", *args])
        capsys.readouterr()
        cli_main()  # returns on success (errors exit)
        return " ".join(capsys.readouterr().out.split())

    listing = out()
    assert all(name in listing for name in REGISTRY)
    for name, method in REGISTRY.items():
        assert all(text for _, _, text in param_table(method.params_cls)), f"{name}: a parameter without help"
    shown = out("uld")
    assert "lora.r 16" in shown and "weight 0.8" in shown and "train.lr=0.001" in shown


def test_run_without_data_is_one_line_before_any_loading(tmp_path, capsys):
    code, err = run_cli(capsys, "run", "--method", "npo_gd", "--out", tmp_path / "r")
    assert code == 2 and "error: no data to unlearn from: pass --data DIR" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.checkpoints").exists()
