"""`unlearn bench` on the micro world: every file written, every cost figure a positive number, ratios
consistent with the raw figures. No timing thresholds: speed targets are checked by the real benchmark."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from unlearnkit.bench import BenchConfig, bench
from unlearnkit.bench.measure import epoch_tokens
from unlearnkit.cli import app
from unlearnkit.costs import peak_rss_bytes, rss_bytes, time_per_epoch, timed_epochs
from unlearnkit.errors import UnlearnError

PNG = b"\x89PNG\r\n\x1a\n"


def test_epoch_tokens_counts_every_part_without_padding(micro_world, micro_tok):
    from unlearnkit.data.formatting import encode_qa
    from unlearnkit.data.tofu import load_split
    from unlearnkit.data.unlearning import ForgetRetainDataset

    tok = micro_tok
    forget = load_split(micro_world.data_dir, "forget10")
    retain = load_split(micro_world.data_dir, "retain90")
    ds = ForgetRetainDataset(forget, retain, tok, max_length=64, seed=3)
    ds.set_epoch(1)
    expected = sum(len(encode_qa(tok, r["question"], r["answer"], 64)["input_ids"]) for r in forget)
    expected += sum(len(encode_qa(tok, retain[ds.retain_index(i)]["question"],
                                  retain[ds.retain_index(i)]["answer"], 64)["input_ids"])
                    for i in range(len(forget)))
    assert epoch_tokens(ds) == expected > 0


def test_timed_epochs_drop_the_warmup_epoch():
    assert timed_epochs([3.0, 1.0, 2.0]) == [1, 2]
    assert timed_epochs([3.0]) == [0]
    assert time_per_epoch([9.0, 1.0, 4.0, 2.0]) == 2.0 and time_per_epoch([3.0]) == 3.0
    assert time_per_epoch([]) is None


def test_overrides_apply_to_all_or_to_the_named_method(micro_world, tmp_path):
    from unlearnkit.bench.run import Target, method_config

    cfg = BenchConfig(out=str(tmp_path), preset=None, overrides=(
        "train.lr=0.002", "uld:method.params.num_layers=2", "ga_kl:train.epochs=7"))
    target = Target(model=str(micro_world.target_dir), data=str(micro_world.data_dir), reference=None)
    uld, kl, gd = (method_config(cfg, target, m, None, tmp_path) for m in ("uld", "kl", "gd"))
    assert uld.train["lr"] == kl.train["lr"] == gd.train["lr"] == 0.002
    assert uld.method.params == {"num_layers": 2} and gd.method.params == {}
    assert kl.train["epochs"] == 7  # alias matches
    assert uld.train["epochs"] == gd.train["epochs"] == cfg.epochs


def test_memory_probes_are_positive():
    assert peak_rss_bytes() >= rss_bytes() > 0


def test_unknown_method_fails_before_any_work(micro_world, tmp_path):
    cfg = BenchConfig(out=str(tmp_path / "b"), preset=None, model=str(micro_world.target_dir),
                      data=str(micro_world.data_dir), methods=("uld", "npo_gdd"))
    with pytest.raises(UnlearnError, match="npo_gdd"):
        bench(cfg)
    assert not (tmp_path / "b").exists()


def _positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.slow  # 23 s on a busy machine: worker processes train and evaluate
def test_bench_micro_smoke(micro_world, tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, [
        "bench", "--preset", "micro", "--world", str(micro_world.root), "--methods", "uld,gd",
        "--epochs", "2", "--threads", "1", "--max-samples", "2", "--eval-max-samples", "2",
        "--eval-max-new-tokens", "4", "--decode-tokens", "3", "--decode-batch", "1,2",
        "--decode-rounds", "1", "--out", str(out),
        "--set", f"uld:method.params.augment_file={micro_world.data_dir / 'forget10_augment.jsonl'}"])
    assert result.exit_code == 0, result.output
    for name in ("bench.json", "bench.md", "bench_efficiency.png", "bench_fq_mu.png", "bench_losses.png",
                 "reference/TOFU_EVAL.json", "runs/uld/run.json", "runs/gd/run.json"):
        assert (out / name).is_file(), name
    for name in ("bench_efficiency.png", "bench_fq_mu.png", "bench_losses.png"):
        assert (out / name).read_bytes().startswith(PNG)

    record = json.loads((out / "bench.json").read_text())
    assert list(record["methods"]) == ["uld", "gd"]
    for name, r in record["methods"].items():
        assert r["method"] == name
        assert len(r["epoch_seconds"]) == 2 and len(r["tokens_per_epoch"]) == 2
        assert r["time_per_epoch"] == r["epoch_seconds"][1]  # median of the epochs after the first
        for key in ("time_per_epoch", "tokens_per_s", "train_peak_rss", "peak_rss", "start_rss",
                    "trainable_params", "total_params", "artifact_bytes", "train_seconds", "global_steps"):
            assert _positive(r[key]), (name, key, r[key])
        assert all(_positive(v) for v in r["epoch_seconds"] + r["tokens_per_epoch"])
        assert r["peak_rss"] >= r["train_peak_rss"] > r["start_rss"]
        assert r["tokens_per_s"] == pytest.approx(r["tokens_per_epoch"][1] / r["epoch_seconds"][1])
        s = r["summary"]
        assert 0 <= s["forget_quality"] <= 1 and math.isfinite(s["model_utility"])
        assert r["log_history"] and "forget_loss" in r["log_history"][0]
    uld, gd = record["methods"]["uld"], record["methods"]["gd"]
    assert uld["trainable_params"] < uld["total_params"]  # LoRA assistant
    assert gd["trainable_params"] == gd["total_params"]  # full fine-tune
    assert uld["artifact_bytes"] < gd["artifact_bytes"]
    # ULD trains on D'f = forget answers + the augmentation's 5 paraphrases each: 6x GD's forget items.
    assert uld["tokens_per_epoch"][0] > gd["tokens_per_epoch"][0]

    ratios = record["ratios"]
    assert all(v == pytest.approx(1.0) for v in ratios["uld"].values() if v is not None)
    assert ratios["gd"]["time_per_epoch"] == pytest.approx(gd["time_per_epoch"] / uld["time_per_epoch"])

    tps = record["decode"]["tokens_per_s"]
    for model in ("target", "uld"):
        assert set(tps[model]) == {"1", "2"} and all(_positive(v) for v in tps[model].values())
    assert ratios["decode_uld_over_target"]["1"] == pytest.approx(tps["uld"]["1"] / tps["target"]["1"])
    assert {t["target"].split(" ")[1] for t in record["targets"]} >= {"time/epoch", "decode"}
    assert all(_positive(t["value"]) for t in record["targets"])

    machine = record["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["versions"]["torch"]
    md = (out / "bench.md").read_text()
    assert "| uld |" in md and "| gd |" in md and "ULD / target" in md
