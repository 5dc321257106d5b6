"""`unlearn report`: markdown table, self-contained HTML with the embedded PNG, from two eval directories."""

from __future__ import annotations

import base64
import json
import re

import pytest

from unlearnkit.eval.tofu import write_eval
from unlearnkit.report import load_run, markdown_table, write_report


def fake_run(root, name, fq, mu, forget_rouge, label=None):
    summary = {"forget_quality": fq, "model_utility": mu, "forget_Q_A_ROUGE": forget_rouge,
               "retain_Q_A_ROUGE": 0.8, "forget_Q_A_Prob": 0.5, "forget_truth_ratio": 0.6}
    if fq is None:
        summary.pop("forget_quality")
    log = {k: {"agg_value": v} for k, v in summary.items()}
    meta = {"name": label} if label else {}
    write_eval(root / name, summary, log, generations=[], meta=meta)
    return root / name


@pytest.fixture
def runs(tmp_path):
    a = fake_run(tmp_path, "run_ga", 1.234e-5, 0.41, 0.35)
    b = fake_run(tmp_path, "run_uld", 0.0321, 0.52, 0.21, label="ULD w=0.8")
    return [a, b]


def test_markdown_table_labels_and_formats(runs):
    loaded = [load_run(d) for d in runs]
    assert [r.name for r in loaded] == ["run_ga", "ULD w=0.8"]
    table = markdown_table(loaded)
    lines = table.strip().splitlines()
    assert lines[0].startswith("| run | F.Q. | M.U. | forget ROUGE-L | retain ROUGE-L")
    assert "| run_ga | 1.234e-05 | 0.4100 | 0.3500 | 0.8000 |" in table
    assert "| ULD w=0.8 | 3.210e-02 | 0.5200 | 0.2100 |" in table


def test_report_writes_markdown_html_png(runs, tmp_path):
    paths = write_report(runs, tmp_path / "out" / "cmp.md")
    assert paths["markdown"].name == "cmp.md"
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    page = paths["html"].read_text()
    embedded = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert embedded and base64.b64decode(embedded.group(1)) == png  # self-contained: the same image
    assert "run_ga" in page and "ULD w=0.8" in page and "1.234e-05" in page
    md = paths["markdown"].read_text()
    assert "cmp.png" in md and "3.210e-02" in md


def test_report_without_forget_quality_still_renders(tmp_path):
    d = fake_run(tmp_path, "no_ref", None, 0.4, 0.3)
    paths = write_report([d], tmp_path / "r.md")
    assert "| no_ref | n/a | 0.4000 |" in paths["markdown"].read_text()
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_report_recomputes_when_summary_missing(tmp_path):
    d = fake_run(tmp_path, "only_log", 0.5, 0.4, 0.3)
    (d / "TOFU_SUMMARY.json").unlink()
    log = json.loads((d / "TOFU_EVAL.json").read_text())
    assert log  # no per-sample values: recompute must refuse with a clear error, not crash
    with pytest.raises(Exception, match="per-sample|eval log"):
        load_run(d)


def test_cli_report(runs, tmp_path):
    from typer.testing import CliRunner

    from unlearnkit.cli import app

    out = tmp_path / "cli" / "report.md"
    result = CliRunner().invoke(app, ["report", *map(str, runs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| ULD w=0.8 | 3.210e-02 |" in result.output
    assert out.is_file() and out.with_suffix(".html").is_file() and out.with_suffix(".png").is_file()


def fake_run_folder(root, folder, fq, mu, lr):
    """An `unlearn run` output as pipeline.run writes it: run.json, config.yaml, eval/ with generations."""
    out = root / folder
    gens = [{"split": split, "index": i, "question": f"{split} q{i}", "answer": f"{split} a{i}",
             "generation": f"{split} g{i}"} for split in ("forget", "retain", "ra", "wf") for i in (1, 0)]
    fake_run(out, "eval", fq, mu, 0.3, label="gd")  # pipeline names a run's eval after its method
    write_eval(out / "eval", json.loads((out / "eval" / "TOFU_SUMMARY.json").read_text()), {},
               generations=gens, meta={"name": "gd", "seconds": 12.5})
    record = {"method": "gd", "forget": "forget10", "seed": 42, "params": {"gamma": 1.0, "alpha": 1.0},
              "train": {"lr": lr, "epochs": 5, "batch_size": 8, "grad_accum": 4, "lora": None,
                        "max_steps": -1},
              "train_seconds": 3.25, "global_steps": 5, "trainable_params": 1000,
              "epoch_seconds": [2.0, 0.25, 0.5, 0.25, 0.25], "train_peak_rss": 3 * 2**30}
    (out / "run.json").write_text(json.dumps(record))
    (out / "config.yaml").write_text("method:\n  name: gd\n")
    return out


def test_two_run_folders_of_one_method_with_a_summary_file_and_a_retain_eval(tmp_path):
    a = fake_run_folder(tmp_path, "gd-lr1e-5", 1e-3, 0.5, 1e-5)
    b = fake_run_folder(tmp_path, "gd-lr1e-4", 2e-2, 0.4, 1e-4)
    retain = fake_run(tmp_path, "retain", None, 0.6, 0.4, label="retain90")
    paths = write_report([a, b, retain, a / "eval" / "TOFU_SUMMARY.json"], tmp_path / "rep.md")
    md = paths["markdown"].read_text()
    quality = md.split("## Training cost")[0]
    rows = [line.split(" | ")[0].lstrip("| ") for line in quality.splitlines() if line.startswith("| ")][1:]
    # one row per input, labels unique: a repeated label gets the folder that tells them apart
    assert rows == [f"gd-lr1e-5 ({tmp_path.name})", "gd-lr1e-4", "retain90", "gd-lr1e-5 (eval)"]
    assert "| retain90 | n/a | 0.6000 |" in md
    assert "Not plotted (no forget quality or model utility; see the table): retain90." in md
    page = paths["html"].read_text()
    for text in ("<th>method</th><td>gd</td>", "<th>lr</th><td>0.0001</td>", "<th>lr</th><td>1e-05</td>",
                 "<th>train_seconds</th><td>3.2 s</td>", "<th>eval_seconds</th><td>12.5 s</td>",
                 "<td>forget</td><td>forget q0</td><td>forget a0</td><td>forget g0</td>",
                 "<td>retain</td><td>retain q0</td>", "<td>world fact</td><td>wf q0</td>", "Not plotted"):
        assert text in page, text
    assert page.count("<h3>sample generations</h3>") == 4
    # the cost table has the two run folders only; time/epoch leaves out the first (warm-up) epoch
    cost = md.split("## Training cost")[1].split("##")[0]
    assert "| gd-lr1e-4 | gd | 0.0001 | 5 | 5 | 0.2 s | 3.2 s | 3,072 MiB | 1,000 | 12.5 s |" in cost
    assert cost.count("| gd-lr1e-5") == 2 and "retain90" not in cost
    samples = md.split("## Sample generations")[1]
    assert "**forget**: forget q0 (answer: forget a0)" in samples and "| gd-lr1e-4 | forget g0 |" in samples
    assert "**world fact**: wf q0" in samples and "| gd-lr1e-4 | wf g0 |" in samples


def test_same_folder_names_in_different_parents_get_the_parent(tmp_path):
    a = fake_run_folder(tmp_path / "seed0", "gd", 1e-3, 0.5, 1e-5)
    b = fake_run_folder(tmp_path / "seed1", "gd", 1e-3, 0.5, 1e-5)
    from unlearnkit.report import load_runs

    assert [r.name for r in load_runs([a, b])] == ["gd (seed0)", "gd (seed1)"]


def test_a_folder_without_evaluation_names_what_to_do(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text("{}")
    with pytest.raises(Exception, match="holds no TOFU_SUMMARY.json .* evaluate it first"):
        load_run(tmp_path / "r")
    with pytest.raises(Exception, match="does not exist"):
        load_run(tmp_path / "missing")
