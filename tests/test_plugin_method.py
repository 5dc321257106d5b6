"""A method added the documented way (docs/design.md, "Adding a method"): one file defining its params
and trainer and registering itself, found through $UNLEARNKIT_PLUGINS and run by `unlearn run`."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli
from safetensors.torch import load_file

from unlearnkit.methods import registry

SCALED_GA = '''
from dataclasses import dataclass

from unlearnkit.methods import LossParams, Method, UnlearnTrainer, param, register
from unlearnkit.methods.base import answer_ce


@dataclass
class ScaledGAParams(LossParams):
    scale: float = param(0.5, "multiplies the forget NLL that gradient ascent maximises")


class ScaledGATrainer(UnlearnTrainer):
    name = "scaled_ga"

    def forget_loss(self, model, inputs):
        nll = answer_ce(model, inputs["forget"])
        return -self.params.scale * nll, {"forget_nll": nll}


register(Method("scaled_ga", ScaledGATrainer, ScaledGAParams, description="gradient ascent, scaled"))
'''


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """The plugin file on $UNLEARNKIT_PLUGINS; the registry is restored afterwards."""
    path = tmp_path / "scaled_ga.py"
    path.write_text(SCALED_GA)
    monkeypatch.setenv(registry.PLUGIN_ENV, str(path))
    saved = dict(registry.REGISTRY), dict(registry.ALIASES), set(registry._plugins)
    yield path
    for live, kept in zip((registry.REGISTRY, registry.ALIASES, registry._plugins), saved, strict=True):
        live.clear()
        live.update(kept)


def test_plugin_method_runs_end_to_end(plugin, micro_world, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run_cli(capsys, "run", "--method", "scaled_ga", "--model", micro_world.target_dir,
                        "--data", micro_world.data_dir, "--forget", "forget01", "--out", out, "--no-eval",
                        "--epochs", "2", "--lr", "1e-3", "train.batch_size=4", "train.grad_accum=1",
                        "train.warmup_ratio=0", "train.logging_steps=1", "method.params.scale=0.25")
    assert code == 0, err
    record = json.loads((out / "run.json").read_text())
    assert record["method"] == "scaled_ga" and record["params"]["scale"] == 0.25
    steps = [e for e in record["log_history"] if "loss" in e]
    assert len(steps) == 2
    for step in steps:  # the logged loss is the plugin's: -scale * forget NLL (gamma 1, no retain term)
        assert step["loss"] == pytest.approx(-0.25 * step["forget_nll"], rel=1e-3, abs=1e-4)
    before = load_file(micro_world.target_dir / "model.safetensors")
    after = load_file(out / "model" / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not before[k].equal(after[k]) for k in before)


def test_broken_plugin_is_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(registry.PLUGIN_ENV, str(tmp_path / "missing.py"))
    code, err = run_cli(capsys, "run", "--method", "ga", "--model", tmp_path, "--data", tmp_path,
                        "--out", tmp_path / "out")
    assert code == 2 and "missing.py does not exist" in err and len(err.strip().splitlines()) == 1


def test_artifact_loaders_are_registered_by_methods(tmp_path, monkeypatch):
    """models/ knows no method: a method registers how to load its artifacts, and a directory that is
    an unlearnkit artifact nobody registered fails with one line saying so."""
    from unlearnkit.errors import UnlearnError
    from unlearnkit.models import loading

    art = tmp_path / "art"
    art.mkdir()
    (art / "config.json").write_text(json.dumps({"model_type": "unlearnkit-toy: a toy method's artifact"}))
    (art / "adapter.safetensors").write_bytes(b"")
    with pytest.raises(UnlearnError, match="unlearnkit-toy: a toy method's artifact .no loader registered"):
        loading.load_model_and_tokenizer(art)
    monkeypatch.setattr(loading, "ARTIFACT_LOADERS", list(loading.ARTIFACT_LOADERS))
    loading.register_artifact_loader(lambda path: (path / "config.json").read_text().find("toy") > 0,
                                     lambda path, trust_remote_code: ("toy model", path.name))
    assert loading.load_model_and_tokenizer(art) == ("toy model", "art")
