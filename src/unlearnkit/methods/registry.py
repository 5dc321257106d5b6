"""The method registry and the protocol a method follows.

A method is a `Method` record -- name, trainer class, parameter dataclass, default training settings,
aliases, description and the class of its pipeline hooks (`MethodRun`) -- that its own module passes to
`register()` when imported. The built-in methods are imported by `unlearnkit.methods`; third-party ones
are found by `load_plugins()`: the `unlearnkit.methods` entry points of installed packages, and the
modules or .py files named in $UNLEARNKIT_PLUGINS.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.errors import UnlearnError
from unlearnkit.methods.base import TOFU_TRAIN, UnlearnTrainer
from unlearnkit.methods.params import MethodParams, param_keys, unknown_keys
from unlearnkit.training.arguments import TrainArgs
from unlearnkit.training.checkpoints import save_model_atomic

ENTRY_POINT_GROUP = "unlearnkit.methods"
PLUGIN_ENV = "UNLEARNKIT_PLUGINS"


@dataclass
class RunContext:
    """What `pipeline.run` hands a method's hooks: the run's config and data, the loaded target, and
    the few services a hook may need from layers above methods/ (passed in, never imported).

    `truth_ratios(model, tokenizer, rows)` scores perturbed-schema rows (eval.tofu.forget_truth_ratios
    at the run's eval batch size); `load_retain_model()` loads --reference when it is a model
    directory, which `reference_is_model()` tells.
    """

    cfg: Any  # the RunConfig
    say: Callable[[str], None]
    reference_is_model: Callable[[], bool]
    load_retain_model: Callable[[], tuple]
    truth_ratios: Callable[[Any, Any, list[dict]], list[float]]
    data: Any = None  # pipeline.RunData (forget, perturbed, retain records), set before load_data()
    model: Any = None  # the target, set once loaded
    tokenizer: Any = None
    resume_from: Path | None = None  # the checkpoint the run continues from


class MethodRun:
    """The hooks `pipeline.run` calls for one run of a method, in this order; the defaults fit a plain
    trainer (train the target or a LoRA on it, save it with save_pretrained). A method with more to do
    subclasses this and names the subclass in its `Method(run_cls=...)`; state of the run lives here.
    """

    monitors_routing = True  # on an MoE target, track its routing (diagnostics/); False if it stays fixed

    def __init__(self, method: Method, params: MethodParams, ctx: RunContext):
        self.method, self.params, self.ctx = method, params, ctx

    def check(self) -> None:
        """Checks needing no model or data (run before any loading): raise UnlearnError."""

    def load_data(self) -> list[dict] | None:
        """Extra training data beyond the forget/retain splits (passed to `unlearn(augmentation=)`)."""
        return None

    def callbacks(self) -> list:
        """Trainer callbacks to add (ctx.model and ctx.resume_from are set)."""
        return []

    def inference_model(self, target, trained):
        """The model to evaluate, given the target and what trained (default: what trained)."""
        return trained

    def record(self, result) -> dict:
        """Entries for run.json after training (before the model is saved)."""
        return {}

    def save(self, trained, path: Path):
        """Save the final model to `path`; returns the model to evaluate."""
        save_model_atomic(trained, path, self.ctx.tokenizer)
        return trained

    def watched_expert(self, result) -> tuple[int, int] | None:
        """The (layer, expert) routing diagnostics follow (default: the top forget-affinity one)."""
        return None


@dataclass(frozen=True)
class Method:
    """A registered method: trainer class, parameter dataclass, default training settings (our short
    names: lr, epochs, batch_size, grad_accum, weight_decay, warmup_ratio, ...) and pipeline hooks."""

    name: str
    trainer_cls: type[UnlearnTrainer]
    params_cls: type[MethodParams] = MethodParams
    train: dict = field(default_factory=lambda: dict(TOFU_TRAIN))
    aliases: tuple[str, ...] = ()
    description: str = ""
    run_cls: type[MethodRun] = MethodRun

    def resolve_params(self, overrides: dict | MethodParams | None = None) -> MethodParams:
        """The defaults overridden by a mapping (an instance is taken as is), validated; an unknown key
        is an error naming the valid ones."""
        if isinstance(overrides, MethodParams):
            params = overrides
        else:
            values = dict(overrides or {})
            unknown = unknown_keys(self.params_cls, values)
            if unknown:
                raise UnlearnError(f"unknown parameter(s) {unknown} for method {self.name}: "
                                   f"use {', '.join(sorted(param_keys(self.params_cls))) or 'none'}")
            try:
                params = self.params_cls.from_mapping(values)
            except UnlearnError as err:
                raise UnlearnError(f"method {self.name}: {err}") from None
        self.trainer_cls.check_params(params)
        return params

    def train_settings(self, overrides: dict | TrainArgs | None = None) -> TrainArgs:
        """The method's default settings overridden by a dict (a TrainArgs is taken as is)."""
        if isinstance(overrides, TrainArgs):
            return overrides
        return TrainArgs.from_settings(self.train, overrides)

    def start_run(self, params: MethodParams, ctx: RunContext) -> MethodRun:
        return self.run_cls(self, params, ctx)


REGISTRY: dict[str, Method] = {}
ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def register(method: Method) -> Method:
    """Add a method (and its aliases) to the registry; a name already taken by another is an error."""
    for key in (method.name, *method.aliases):
        if _key(key) != key:
            raise UnlearnError(f"method name {key!r} must be lower case with underscores ({_key(key)!r})")
        taken = REGISTRY.get(ALIASES.get(key, key))
        if taken is not None and taken is not method:
            raise UnlearnError(f"method name {key!r} is already registered ({taken.trainer_cls.__module__}): "
                               "choose another name")
    REGISTRY[method.name] = method
    ALIASES.update({alias: method.name for alias in method.aliases})
    return method


_entry_points_loaded = False
_plugins: set[str] = set()  # $UNLEARNKIT_PLUGINS entries imported so far


def load_plugins() -> None:
    """Import third-party methods: every `unlearnkit.methods` entry point of the installed packages
    (once), then each module name or .py file listed in $UNLEARNKIT_PLUGINS (os.pathsep-separated)
    not imported yet. Importing a plugin registers its methods."""
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        from importlib.metadata import entry_points

        for entry in entry_points(group=ENTRY_POINT_GROUP):
            _import_plugin(entry.value, entry.load)
    for spec in filter(None, (s.strip() for s in os.environ.get(PLUGIN_ENV, "").split(os.pathsep))):
        if spec not in _plugins:
            _import_plugin(spec, lambda spec=spec: import_plugin(spec))
            _plugins.add(spec)


def _import_plugin(spec: str, load: Callable) -> None:
    try:
        load()
    except UnlearnError:
        raise
    except Exception as err:  # a plugin's own bug: name the plugin, keep the cause
        raise UnlearnError(f"method plugin {spec} failed to load ({type(err).__name__}: {err}): fix it or "
                           f"remove it from {PLUGIN_ENV}") from err


def import_plugin(spec: str):
    """Import a plugin given as a module name (mypkg.methods) or a path to a .py file."""
    path = Path(spec).expanduser()
    if spec.endswith(".py"):
        if not path.is_file():
            raise UnlearnError(f"method plugin {spec} does not exist: fix {PLUGIN_ENV}")
        name = f"unlearnkit_plugin_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


def list_methods() -> list[str]:
    """Canonical method names (aliases excluded), plugins included."""
    load_plugins()
    return list(REGISTRY)


def get_method(name: str) -> Method:
    """The Method of a name or alias; an unknown name is an UnlearnError naming the closest one."""
    load_plugins()
    key = _key(name)
    key = ALIASES.get(key, key)
    if key in REGISTRY:
        return REGISTRY[key]
    known = list(REGISTRY) + list(ALIASES)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.0)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UnlearnError(f"unknown method {name!r}: {hint}known methods: {', '.join(known)}")
