"""Hugging Face hub names: what counts as one, and one-line errors when one cannot be loaded.

Shared by data/ (datasets by name) and models/ (models by ID); the loading itself goes through
`datasets` / `from_pretrained`, which honour the HF cache and HF_HUB_OFFLINE.
"""

from __future__ import annotations

import re

from unlearnkit.errors import UnlearnError

# huggingface_hub's repo-id rule: [namespace/]name of letters, digits, '-', '_', '.'
_HUB_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?")


def is_hub_id(spec: str) -> bool:
    """'org/name' or 'name', and not path-looking ('./x', '/x', '~/x', 'a/b/c', '..')."""
    return not spec.startswith((".", "/", "~")) and bool(_HUB_ID_RE.fullmatch(spec)) and ".." not in spec


def hub_error(kind: str, name: str, err: BaseException, part: str | None = None) -> UnlearnError:
    """The hub model/dataset `name` (its `part`, e.g. a split) could not be loaded: offline and uncached,
    or the first line of why."""
    from huggingface_hub import constants

    what = f"{kind} {name!r}" + (f" ({part})" if part else "")
    repo_type = " --repo-type dataset" if kind == "dataset" else ""
    if constants.is_offline_mode():
        return UnlearnError(
            f"{what} is no local folder and is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}), and HF_HUB_OFFLINE=1 forbids downloading it: download it once "
            "with network access "
            f"(`hf download {name}{repo_type}`) or pass a local folder")
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return UnlearnError(f"cannot load {what}: no local folder of that name, and the Hugging Face "
                        f"hub and cache failed ({reason}): check the name and the network, or pass a "
                        "local folder")
