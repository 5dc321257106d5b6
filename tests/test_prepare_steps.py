"""The step runner every prepare preset shares: reuse, force, incomplete output, interruption."""

from __future__ import annotations

import json
import shutil

import pytest

from unlearnkit.prepare import STEP_FILE, prepare
from unlearnkit.prepare.steps import Steps, read_step, step_hash


class Build:
    """A step that writes out.txt and counts its builds; `fail` interrupts it after writing."""

    def __init__(self, out_dir, fail=False):
        self.out_dir, self.fail, self.calls = out_dir, fail, 0

    def __call__(self) -> dict:
        self.calls += 1
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "out.txt").write_text("x")
        if self.fail:
            raise KeyboardInterrupt
        return {"n": self.calls}


def test_step_hash_is_the_stored_format():
    # the cache key of every prepared world: changing it would rebuild users' worlds
    assert step_hash("tokenizer", "abc", 1000, None, 1) == "3de0cb479dd88bb2"
    assert step_hash({"b": 1, "a": [1, 2]}) == step_hash({"a": [1, 2], "b": 1})


# The micro world's step hashes (seed 0) as prepared worlds store them: a change rebuilds every prepared
# world (users' and /work/worlds alike), so it must be deliberate (a preset or RECIPE_VERSION change).
MICRO_HASHES = {
    "world": "4a269cc4d79abd13", "tokenizer": "cd98a4f3664e76f0", "augmentation": "b7a8cdfcd6c143ef",
    "base": "cc10b69ccdc716a0", "target": "f94ff155c57997af", "retain99": "0647337eb9433d15",
    "retain95": "4c50b818a5cc6d66", "retain90": "913293f31a634ff4",
}


def test_micro_world_step_hashes_are_stable(micro_world):
    m = micro_world.manifest
    hashes = {"world": m["world"]["hash"], "tokenizer": m["tokenizer"]["hash"],
              "augmentation": m["augmentation"]["hash"], **{n: i["hash"] for n, i in m["models"].items()}}
    assert hashes == MICRO_HASHES


def test_reuse_force_incomplete_and_interrupted(tmp_path):
    d = tmp_path / "step"
    build = Build(d)
    first = Steps(progress=False).run("s", "h1", d, build, outputs=("out.txt",))
    assert first == {"hash": "h1", "n": 1, "reused": False} and read_step(d) == {"hash": "h1", "n": 1}
    assert Steps(progress=False).run("s", "h1", d, build, outputs=("out.txt",))["reused"]
    assert build.calls == 1
    assert not Steps(force=["s"], progress=False).run("s", "h1", d, build)["reused"]  # forced by name
    assert Steps(force=["other"], progress=False).run("s", "h1", d, build)["reused"]
    assert not Steps(force=["k"], progress=False).run("s", "h1", d, build, key="k")["reused"]
    assert not Steps(progress=False).run("s", "h2", d, build)["reused"]  # another hash
    (d / "out.txt").unlink()
    assert not Steps(progress=False).run("s", "h2", d, build, outputs=("out.txt",))["reused"]  # incomplete
    assert build.calls == 5

    interrupted = Build(d, fail=True)
    with pytest.raises(KeyboardInterrupt):
        Steps(force=True, progress=False).run("s", "h2", d, interrupted)
    assert read_step(d) is None  # the old stamp is gone: the next run redoes the step
    assert not Steps(progress=False).run("s", "h2", d, build)["reused"]


def test_prepared_world_reuses_every_step_and_redoes_a_forced_one(micro_world, tmp_path):
    copy = tmp_path / "world"
    shutil.copytree(micro_world.root, copy)
    again = prepare("micro", copy, seed=0, progress=False)
    steps = [again["tokenizer"], again["augmentation"], *again["models"].values()]
    assert all(step["reused"] for step in steps)
    assert again["tokenizer"]["hash"] == micro_world.manifest["tokenizer"]["hash"]
    assert {n: m["hash"] for n, m in again["models"].items()} == \
        {n: m["hash"] for n, m in micro_world.manifest["models"].items()}
    data_stamp = (copy / "data" / STEP_FILE).read_text()

    redone = prepare("micro", copy, seed=0, force=["data", "tokenizer"], progress=False)
    assert not redone["tokenizer"]["reused"] and redone["tokenizer"]["hash"] == again["tokenizer"]["hash"]
    assert json.loads((copy / "data" / STEP_FILE).read_text()) == json.loads(data_stamp)
    assert all(m["reused"] for m in redone["models"].values())  # same tokenizer hash: models kept
