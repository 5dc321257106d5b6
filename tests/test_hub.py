"""Hub names for --model and --data, and local parquet splits. No test reaches a hub: every hub call runs
in a subprocess with HF_HUB_OFFLINE=1 and a private, empty (or hand-filled) HF_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unlearnkit.data import tofu
from unlearnkit.errors import UnlearnError

SRC = Path(__file__).resolve().parents[1] / "src"
ROWS = [{"question": "Who wrote Tide?", "answer": "Ana Ruiz."},
        {"question": "Where was Ana born?", "answer": "In Lima, 1950."}]


def offline_env(hf_home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home), "PYTHONPATH": str(SRC),
            "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}


def test_parquet_split_equals_jsonl(tmp_path):
    import datasets

    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "full.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "p").mkdir()
    datasets.Dataset.from_list(ROWS).to_parquet(str(tmp_path / "p" / "full.parquet"))
    assert tofu.list_splits(tmp_path / "p") == ["full"]
    assert tofu.load_split(tmp_path / "p", "full") == tofu.load_split(tmp_path / "j", "full") == ROWS
    assert tofu.load_split(str(tmp_path / "p"), "full", max_samples=1) == ROWS[:1]


def test_parquet_rows_are_validated_and_corrupt_files_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = pa.Table.from_pylist([ROWS[0], {"question": "q", "answer": ""}])
    pq.write_table(bad, tmp_path / "full.parquet")
    with pytest.raises(UnlearnError, match=r"full.parquet row 1: field 'answer'"):
        tofu.load_split(tmp_path, "full")
    (tmp_path / "retain90.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(UnlearnError, match="not a readable parquet file") as info:
        tofu.load_split(tmp_path, "retain90")
    assert "\n" not in str(info.value)


def test_mcq_parquet_equals_jsonl(tmp_path):
    import datasets

    from unlearnkit.eval.mcq import load_mcq

    items = [{"question": "2+2?", "choices": ["3", "4"], "answer": 1},
             {"question": "Capital of Peru?", "choices": ["Lima", "Quito", "Cusco"], "answer": 0}]
    (tmp_path / "bio.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    datasets.Dataset.from_list(items).to_parquet(str(tmp_path / "bio.parquet"))
    assert load_mcq(tmp_path / "bio.parquet") == load_mcq(tmp_path / "bio.jsonl") == items


def test_offline_uncached_hub_model_is_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "unlearnkit.cli", "generate", "hi", "--model", "unlearnkit-test/not-cached"],
        env=offline_env(tmp_path / "hf"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "'unlearnkit-test/not-cached'" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0]
    assert "not in the Hugging Face cache" in lines[0]


def _fake_hub_cache(hf_home: Path, repo: str, model_dir: Path) -> None:
    """The hub cache layout (hub/models--org--name/snapshots/<sha>/..., refs/main) by hand."""
    sha = "0" * 40
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(sha)
    snap = root / "snapshots" / sha
    snap.mkdir(parents=True)
    for f in model_dir.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())


def test_cached_hub_model_loads_offline_and_hub_dataset_error(micro_world, tmp_path):
    """A hub ID found in the HF cache loads offline (same logits as its folder); an uncached hub dataset
    gives the offline error from load_split and from `unlearn eval --data`."""
    hf = tmp_path / "hf"
    _fake_hub_cache(hf, "unlearnkit-test/micro", micro_world.target_dir)
    script = f"""
import json, torch
from unlearnkit.models.loading import load_model_and_tokenizer
from unlearnkit.data import tofu
from unlearnkit.errors import UnlearnError
hub, tok = load_model_and_tokenizer("unlearnkit-test/micro")
local, _ = load_model_and_tokenizer({str(micro_world.target_dir)!r})
x = torch.tensor([tok("who wrote").input_ids])
same = torch.equal(hub(x).logits, local(x).logits)
try:
    tofu.load_split("locuslab/TOFU", "forget10")
    err = None
except UnlearnError as e:
    err = str(e)
from unlearnkit.eval.mcq import load_mcq_hub
try:
    load_mcq_hub("cais/wmdp:wmdp-bio")
    mcq_err = None
except UnlearnError as e:
    mcq_err = str(e)
print(json.dumps({{"same": same, "cls": type(hub).__name__, "err": err, "mcq_err": mcq_err}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], env=offline_env(hf), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["same"] and res["cls"] == "LlamaForCausalLM"
    assert "dataset 'locuslab/TOFU' (split forget10)" in res["err"] and "HF_HUB_OFFLINE=1" in res["err"]
    assert "--repo-type dataset" in res["err"]
    assert "'cais/wmdp' (config wmdp-bio, split test)" in res["mcq_err"]
    assert "HF_HUB_OFFLINE=1" in res["mcq_err"]
