"""training.arguments.TrainArgs: the one settings type (layers of short-name dicts -> TrainingArguments),
and the prepared-world cache keys that must not move when the settings code does."""

import pytest

from unlearnkit.errors import UnlearnError
from unlearnkit.methods import get_method
from unlearnkit.prepare import MOE_PRESETS, PRESETS, TOFU_PRESETS
from unlearnkit.prepare.steps import step_hash
from unlearnkit.training.arguments import TrainArgs

# step_hash of each preset's training recipe at seed 0, computed with base22's FinetuneConfig.to_dict():
# prepared worlds (and the long real-TOFU preparation) are reused only while these stay equal.
BASE22_RECIPE_HASHES = {
    "micro.base": "13d51c8685eed94a", "micro.target": "13d51c8685eed94a",
    "mini.base": "13d51c8685eed94a", "mini.target": "ef292a13d6e28c35",
    "small.base": "05e00ae87ee61737", "small.target": "4b2d5dbfa3c188cb",
    "smollm2.base": "05e00ae87ee61737", "smollm2.target": "94f3727c2ea0e4cf",
    "moe": "09f60b040e5a017b", "moe-plain": "09f60b040e5a017b", "moe-mixtral": "09f60b040e5a017b",
    "moe-micro": "3af33955b5d87c3c", "tofu-smollm2": "25341debe581b167", "tofu-micro": "c310cbb24528cf07",
}


def test_preset_recipes_hash_as_before():
    recipes = {f"{n}.{part}": getattr(p, part) for n, p in PRESETS.items() for part in ("base", "target")}
    recipes |= {n: p.train for n, p in {**MOE_PRESETS, **TOFU_PRESETS}.items()}
    assert {n: step_hash(r | {"seed": 0}) for n, r in recipes.items()} == BASE22_RECIPE_HASHES


def test_method_defaults_then_user_settings():
    """Unset keys fall back to the method's defaults, then TrainArgs' own; aliases and field names mix."""
    args = get_method("uld").train_settings({"learning_rate": 2e-3, "bf16": False, "epochs": 3})
    assert (args.learning_rate, args.num_train_epochs, args.per_device_train_batch_size) == (2e-3, 3, 8)
    assert (args.warmup_steps, args.max_steps, args.data_seed, args.report_to) == (0.1, -1, 0, [])
    record = args.record()
    assert (record["lr"], record["epochs"], record["warmup_ratio"], record["save_strategy"]) == \
        (2e-3, 3, 0.1, "no")
    assert "bf16" not in record  # at its default
    assert TrainArgs.from_settings({"report_to": "tensorboard", "seed": 4}).record()["report_to"] == \
        ["tensorboard"]


@pytest.mark.parametrize("settings, message", [
    ({"lr": 0}, "lr must be > 0, got 0"),
    ({"warmup_ratio": 1.5}, "warmup_ratio must be in [0, 1), got 1.5"),
    ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
    ({"epochs": 0}, "epochs must be > 0 (or set train.max_steps), got 0"),
    ({"scheduler": "cosin"}, "training settings: cosin is not a valid SchedulerType, please select one"),
    ({"lrr": 1}, "unknown training setting 'lrr': did you mean 'lr'?"),
])
def test_bad_settings_are_one_line_user_errors(settings, message):
    with pytest.raises(UnlearnError) as info:
        TrainArgs.from_settings(settings)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
