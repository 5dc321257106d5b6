"""Progress when output is not a terminal: periodic plain lines for training and evaluation, each
evaluation named after the model it scores, and no transformers bars; `unlearn report` on the run folders."""

from __future__ import annotations

import io
import re
import shutil

from helpers import run_cli
from rich.console import Console

from unlearnkit.progress import INTERVAL_ENV, PlainLines, TrainProgress, progress_bars


def plain_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=200), buf


def test_plain_lines_every_interval_and_at_completion(monkeypatch):
    console, buf = plain_console()
    advance = PlainLines(console, interval=0).task("forget Q_A_Prob", 4)
    for _ in range(4):
        advance(1)
    lines = buf.getvalue().splitlines()
    assert [line.split(" elapsed")[0] for line in lines] == [
        "forget Q_A_Prob 1/4 (25%)", "forget Q_A_Prob 2/4 (50%)", "forget Q_A_Prob 3/4 (75%)",
        "forget Q_A_Prob 4/4 (100%)"]
    assert "eta" in lines[0] and "eta" not in lines[-1]

    console, buf = plain_console()
    advance = PlainLines(console, interval=3600).task("slow", 3)
    advance(1)
    advance(1)
    assert buf.getvalue() == ""  # within the interval: silent
    advance(1)
    assert buf.getvalue().startswith("slow 3/3 (100%)")  # completion always prints

    monkeypatch.setenv(INTERVAL_ENV, "7.5")
    assert PlainLines(console).interval == 7.5


def test_train_progress_reports_steps_and_loss_through_a_plain_factory(micro_world, micro_tok, micro_model):
    from unlearnkit.methods import unlearn

    tok, model = micro_tok, micro_model("target")
    from unlearnkit.data.tofu import load_split

    console, buf = plain_console()
    with progress_bars(console, interval=0) as progress:
        unlearn("ga", model, tok, load_split(micro_world.data_dir, "forget10"), train=dict(
            epochs=3, batch_size=4, grad_accum=1, logging_steps=1, warmup_ratio=0, lr=1e-4),
            callbacks=[TrainProgress(progress, "train ga")])
    lines = buf.getvalue().splitlines()
    steps = [int(re.match(r"train ga (\d+)/9 ", line).group(1)) for line in lines]
    assert steps == list(range(1, 10))  # interval 0: one line per optimizer step
    assert re.search(r"epoch 3\.00  loss -?\d", lines[-1])
    assert lines[0].endswith("loss -") and re.search(r"loss -?\d", lines[1])  # live from the first log on


def test_run_prints_train_and_named_eval_lines_then_report_tells_two_runs_apart(micro_world, tmp_path, capsys,
                                                                              monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0")
    gd_run = tmp_path / "gd-a"
    code, err = run_cli(capsys, "run", "--method", "gd", "--model", micro_world.target_dir, "--data",
                        micro_world.data_dir, "--forget", "forget10", "--epochs", "2", "--out", gd_run,
                        "--max-samples", "2", "eval.max_new_tokens=8", "eval.batch_size=1",
                        "--reference", micro_world.retain_dirs["forget10"])
    assert code == 0, err
    assert re.search(r"^train gd 2/2 \(100%\) elapsed \d+:\d\d  epoch 2\.00  loss ", err, re.M), err
    retain = micro_world.retain_dirs["forget10"].name
    for model in (f"retain ({retain})", "gd"):  # the reference model is scored first, then the result
        for split in ("forget", "retain", "ra", "wf"):
            name = re.escape(f"[{model}] {split}")
            assert re.search(rf"^{name} Q_A_PARA/PERT_Prob 1/2 \(50%\)", err, re.M), (model, err)
            assert re.search(rf"^{name} Q_A_ROUGE 2/2 \(100%\)", err, re.M), (model, err)
    assert "Loading weights" not in err and "Writing model shards" not in err and "it/s]" not in err

    # the report over two run folders of the same method (this run and a copy) tells them apart
    other = gd_run.parent / "gd-b"
    shutil.copytree(gd_run, other)
    code, _ = run_cli(capsys, "report", gd_run, other, "--out", gd_run.parent / "rep.md")
    assert code == 0
    md = (gd_run.parent / "rep.md").read_text()
    assert "| gd-a | " in md and "| gd-b | " in md
    page = (gd_run.parent / "rep.html").read_text()
    assert page.count("<th>method</th><td>gd</td>") == 2 and page.count("<td>world fact</td>") == 2


def test_eval_in_a_subprocess_logs_plain_named_lines_and_no_library_bars(micro_world, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, INTERVAL_ENV: "0", "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)  # the command itself must switch the bars off
    args = ["eval", "--model", micro_world.target_dir, "--data", micro_world.data_dir,
            "--out", tmp_path / "e", "--name", "tgt", "--max-samples", "2", "--batch-size", "1",
            "--max-new-tokens", "4"]
    proc = subprocess.run([sys.executable, "-m", "unlearnkit.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^\[tgt: .*target\] wf Q_A_ROUGE 2/2 \(100%\) elapsed", proc.stderr, re.M), proc.stderr
    assert "Loading weights" not in proc.stderr and "it/s]" not in proc.stderr
