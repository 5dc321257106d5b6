"""The packaged configs/*.yaml: each loads as a run config, its method resolves its params and training
settings (running their validation), and it names only choices that differ from the method's defaults
(the defaults live in the method's params dataclass and Method(train=...), nowhere else; a setting
the run config defaults, such as train.seed, may be named)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from unlearnkit.config import load_config
from unlearnkit.methods import get_method, list_methods
from unlearnkit.pipeline import train_overrides

CONFIGS = sorted((Path(__file__).parents[1] / "src" / "unlearnkit" / "configs").glob("*.yaml"))


def test_every_method_has_a_config():
    assert {p.stem for p in CONFIGS} >= set(list_methods())


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_loads_and_validates(path):
    cfg = load_config(path, [])
    spec = get_method(cfg.method.name)
    params = spec.resolve_params(cfg.method.params)
    spec.train_settings(train_overrides(cfg))
    assert params.to_dict().keys() >= cfg.method.params.keys()


def _restated(values: dict, defaults: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            out += _restated(value, defaults[key], f"{prefix}{key}.")
        elif key in defaults and defaults[key] == value:
            out.append(prefix + key)
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_names_only_non_default_choices(path):
    data = yaml.safe_load(path.read_text())
    spec = get_method(data["method"]["name"])
    defaults = spec.resolve_params(None).to_dict()
    assert _restated(data["method"].get("params", {}), defaults) == []
    assert _restated(data.get("train", {}), spec.train) == []  # the method's own training defaults
