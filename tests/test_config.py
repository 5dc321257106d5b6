"""Config system: YAML + dotted overrides merged into dataclasses, with typed, suggestive errors."""

import dataclasses

import pytest
import yaml

from unlearnkit.config import (
    DataConfig,
    RunConfig,
    apply_overrides,
    config_hash,
    config_to_dict,
    load_config,
    save_config,
)
from unlearnkit.errors import UnlearnError

YAML_TEXT = """\
data:
  data: /data/tofu
  forget: forget05
model:
  model: llama-micro
train:
  epochs: 2
  lr: 1e-4          # PyYAML reads this as a string: it must still become a float
  batch_size: 4
  lora: {r: 16, alpha: 32, dropout: 0.05}
method:
  name: npo
  params: {beta: 0.1}
eval:
  reference: runs/retain/TOFU_EVAL.json
out: runs/npo
"""


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path, overrides=()):
    with pytest.raises(UnlearnError) as info:
        load_config(path, list(overrides))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_defaults():
    cfg = load_config(None, [])
    assert cfg == RunConfig()
    assert (cfg.data.forget, cfg.train, cfg.seed, cfg.method.name) == ("forget10", {"seed": 42}, 42, "uld")
    assert cfg.method.params == {} and cfg.eval.enabled  # unset train settings: the method's defaults


def test_yaml_load_merges_into_defaults(tmp_path):
    cfg = load_config(write(tmp_path, YAML_TEXT), [])
    assert cfg.data.data == "/data/tofu" and cfg.data.forget == "forget05"
    assert cfg.data.max_length == 256  # untouched default
    assert cfg.train["epochs"] == 2.0 and isinstance(cfg.train["epochs"], float)  # int accepted for float
    assert cfg.train["lr"] == 1e-4 and isinstance(cfg.train["lr"], float)
    assert cfg.train["lora"] == {"r": 16, "alpha": 32, "dropout": 0.05}
    assert cfg.method == dataclasses.replace(cfg.method, name="npo", params={"beta": 0.1})
    assert cfg.eval.reference == "runs/retain/TOFU_EVAL.json"
    assert cfg.out == "runs/npo"


def test_nested_overrides(tmp_path):
    cfg = load_config(
        write(tmp_path, YAML_TEXT),
        [
            "train.lr=1e-3",
            "method.params.beta=0.2",
            "method.params.gamma=1",
            "train.lora.r=8",
            "eval.reference=null",
            "data.max_samples=10",
            "train.gradient_checkpointing=true",
            "model.dtype=bfloat16",
            "train.seed=7",
        ],
    )
    assert cfg.train["lr"] == 1e-3
    assert cfg.method.params == {"beta": 0.2, "gamma": 1}
    assert cfg.train["lora"] == {"r": 8, "alpha": 32, "dropout": 0.05}  # dict fields merge key by key
    assert cfg.eval.reference is None
    assert cfg.data.max_samples == 10
    assert cfg.train["gradient_checkpointing"] is True
    assert cfg.model.dtype == "bfloat16"
    assert cfg.seed == 7
    # later overrides win; a dict field can be cleared with null and rebuilt
    cfg = load_config(None, ["train.lr=1", "train.lr=0.5", "train.lora.r=4", "train.lora=null"])
    assert cfg.train["lr"] == 0.5 and cfg.train["lora"] is None
    assert load_config(None, ["train.lora.r=4"]).train["lora"] == {"r": 4}


def test_dotted_keys_inside_yaml(tmp_path):
    cfg = load_config(write(tmp_path, "train.lr: 3.0e-4\ntrain:\n  epochs: 1\n"), [])
    assert cfg.train["lr"] == 3e-4 and cfg.train["epochs"] == 1.0
    cfg = load_config(write(tmp_path, "train.lora.r: 8\ntrain:\n  lora.alpha: 16\n", "lora.yaml"), [])
    assert cfg.train["lora"] == {"r": 8, "alpha": 16}


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.lr=abc", "config key 'train.lr' expects float or null, got str 'abc'"),
        ("train.batch_size=2.5", "config key 'train.batch_size' expects int or null, got float 2.5"),
        ("train.batch_size=true", "config key 'train.batch_size' expects int or null, got bool True"),
        ("eval.enabled=1", "config key 'eval.enabled' expects bool, got int 1"),
        ("data.max_samples=x", "config key 'data.max_samples' expects int or null, got str 'x'"),
        ("model.dtype=fp16", "config key 'model.dtype' expects one of 'float32', 'bfloat16', 'float16'"),
        ("train.lora=5", "config key 'train.lora' expects mapping or null, got int 5"),
        ("train.lr.x=1", "config key 'train.lr' expects float or null, got dict {'x': 1}"),
        ("train=5", "config key 'train' is a section: set its fields, e.g. train.epochs=..."),
        ("train.batch_size=0", "train.batch_size must be >= 1, got 0"),
        ("train.lr=.nan", "config key 'train.lr' must be a finite number, got float nan"),
        ("train.lr=1e400", "config key 'train.lr' must be a finite number, got float inf"),
        ("train.save_strategy=best", "config key 'train.save_strategy' expects one of 'no', 'epoch'"),
        ("eval.stop_at_forget_accuracy=1.5", "eval.stop_at_forget_accuracy is an accuracy: use a value in"),
        ("eval.stop_check_steps=0", "eval.stop_check_steps must be >= 1, got 0"),
        (
            "data.data=0123",
            "config key 'data.data' expects str or null, got int 83 (quote the value to keep it as text)",
        ),
    ],
)
def test_type_errors(override, expected):
    assert error_of(None, [override]).startswith(expected)


def test_int_accepted_for_float_and_integral_values_for_int():
    cfg = load_config(None, ["train.lr=1", "train.batch_size=16.0", "train.max_steps=1e3"])
    assert cfg.train["lr"] == 1.0 and isinstance(cfg.train["lr"], float)
    assert cfg.train["batch_size"] == 16 and isinstance(cfg.train["batch_size"], int)
    assert cfg.train["max_steps"] == 1000
    # YAML 1.1 reads an unquoted `no` as false; `save_strategy=no` still means "no"
    assert load_config(None, ["train.save_strategy=no"]).train["save_strategy"] == "no"


@pytest.mark.parametrize(
    "override, suggestion",
    [
        ("train.lrr=1", "train.lr"),
        ("lr=1", "train.lr"),
        ("seed=3", "train.seed"),
        ("trian.lr=1", "train.lr"),
        ("model.modle=x", "model.model"),
        ("method.parms.beta=1", "method.params"),
        ("eval.max_new_token=5", "eval.max_new_tokens"),
    ],
)
def test_unknown_key_suggests_the_closest(override, suggestion):
    key = override.split("=")[0]
    assert error_of(None, [override]) == f"unknown config key {key!r}: did you mean {suggestion!r}?"


def test_unknown_key_in_yaml_file(tmp_path):
    path = write(tmp_path, "train:\n  lr: 1.0e-3\n  warmup_ration: 0.1\n")
    assert error_of(path) == "unknown config key 'train.warmup_ration': did you mean 'train.warmup_ratio'?"


def test_any_trainer_argument_is_a_train_setting():
    """Every transformers TrainingArguments field is reachable, type-checked against its annotation; a
    later key naming the same field as an earlier alias replaces it."""
    cfg = load_config(None, ["train.bf16=true", "train.report_to=tensorboard",
                             "train.lr_scheduler_type=cosine", "train.lr=1e-3", "train.learning_rate=2e-4",
                             "train.adam_beta2=0.98"])
    assert cfg.train == {"seed": 42, "bf16": True, "report_to": "tensorboard",
                         "lr_scheduler_type": "cosine", "learning_rate": 2e-4, "adam_beta2": 0.98}
    assert error_of(None, ["train.bf16=1"]) == "config key 'train.bf16' expects bool or null, got int 1"
    assert error_of(None, ["train.adam_epsilonn=1e-6"]) == \
        "unknown config key 'train.adam_epsilonn': did you mean 'train.adam_epsilon'?"
    assert error_of(None, ["train.warmup_ratio=2"]) == "train.warmup_ratio must be in [0, 1), got 2.0"
    assert load_config(None, ["train.warmup=20"]).train["warmup"] == 20  # warmup: a ratio or steps
    assert error_of(None, ["train.lr_scheduler_type=cosin"]).startswith(
        "config key 'train.lr_scheduler_type' expects one of 'linear', 'cosine',")
    assert load_config(None, ["train.eval_strategy=no"]).train["eval_strategy"] == "no"  # YAML's false


def test_free_form_dicts_accept_any_key():
    cfg = load_config(None, ["method.params.anything_goes.deep=1"])
    assert cfg.method.params == {"anything_goes": {"deep": 1}}


def test_override_without_equals():
    assert error_of(None, ["train.lr"]) == "override 'train.lr' is not key=value: write it like train.lr=1e-4"
    assert "is not key=value" in error_of(None, ["=1"])
    assert "empty key part" in error_of(None, ["train..lr=1"])


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "train:\n  lr: 1.0e-3\n  epochs: [1, 2\nmethod:\n  name: ga\n")
    message = error_of(path)
    assert message.startswith(f"{path} line ")
    line = int(message.split(" line ")[1].split(":")[0])
    assert line in (4, 5)  # the unclosed '[' is detected where the flow sequence cannot continue
    tab_path = write(tmp_path, "train:\n\tlr: 1\n", "tab.yaml")
    assert error_of(tab_path).startswith(f"{tab_path} line 2: invalid YAML")


def test_yaml_root_must_be_a_mapping(tmp_path):
    assert "must be a mapping of sections" in error_of(write(tmp_path, "- a\n- b\n"))
    assert load_config(write(tmp_path, "# only a comment\n"), []) == RunConfig()
    assert "does not exist" in error_of(tmp_path / "missing.yaml")


def test_save_load_round_trip(tmp_path):
    cfg = load_config(
        write(tmp_path, YAML_TEXT), ["method.params.beta=0.25", "train.lr=3e-5", "data.data='0123'"]
    )
    path = save_config(cfg, tmp_path / "out")
    assert path == tmp_path / "out" / "config.yaml"
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp file left behind
    assert load_config(path, []) == cfg and cfg.data.data == "0123"
    assert yaml.safe_load(path.read_text()) == config_to_dict(cfg)


def test_hash_is_stable_and_sensitive():
    cfg = load_config(None, ["train.lr=1e-4", "method.params.beta=0.1", "method.params.alpha=1"])
    same = load_config(None, ["method.params.alpha=1", "method.params.beta=0.1", "train.lr=0.0001"])
    assert len(config_hash(cfg)) == 12 and all(c in "0123456789abcdef" for c in config_hash(cfg))
    assert config_hash(cfg) == config_hash(same)  # key order and number spelling do not matter
    assert config_hash(cfg) != config_hash(apply_overrides(cfg, ["method.params.beta=0.2"]))
    assert config_hash(cfg) == config_hash(apply_overrides(cfg, ["out=elsewhere", "overwrite=true"]))
    assert config_hash(RunConfig()) == config_hash(RunConfig())


def test_apply_overrides_on_another_dataclass():
    @dataclasses.dataclass
    class PrepareConfig:
        preset: str = "micro"
        seed: int = 0
        data: DataConfig = dataclasses.field(default_factory=DataConfig)

    base = PrepareConfig()
    cfg = apply_overrides(base, ["seed=3", "data.max_length=64"])
    assert (cfg.seed, cfg.data.max_length, base.seed) == (3, 64, 0)  # the input is not modified
    with pytest.raises(UnlearnError, match="unknown config key 'preest': did you mean 'preset'"):
        apply_overrides(base, ["preest=small"])
