"""Fuzzing the two user-input boundaries: whatever a split file or a config holds, the result is either
valid data or one UnlearnError line, never a traceback from deeper down."""

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unlearnkit.config import RunConfig, load_config
from unlearnkit.data import tofu
from unlearnkit.errors import UnlearnError

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SPLITS = ["full", "forget10", "forget10_perturbed", "world_facts_perturbed"]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
good_text = st.text(alphabet="ab .?", min_size=1, max_size=6)
field_values = st.one_of(good_text, st.lists(good_text, min_size=1, max_size=3), json_values)
FIELDS = ("question", "answer", "paraphrased_answer", "perturbed_answer")
# Records that look like TOFU (the right field names, values of any kind) reach the validator's edges.
tofu_like = st.fixed_dictionaries({f: field_values for f in FIELDS}) | st.fixed_dictionaries(
    {}, optional={f: field_values for f in FIELDS}
)
valid_record = st.fixed_dictionaries(
    {f: good_text for f in FIELDS[:3]} | {"perturbed_answer": st.lists(good_text, min_size=1, max_size=3)},
    optional={"paraphrased_question": json_values},
)


def check_split(content: bytes, split: str, name: str) -> list[dict] | None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_bytes(content)
        try:
            records = tofu.load_split(tmp, split)
        except UnlearnError as err:
            assert "\n" not in str(err) and str(err)
            return None
    # Accepted: every record satisfies the split's schema.
    assert records
    for record in records:
        for field, kind in tofu.REQUIRED_FIELDS[tofu.split_kind(split)].items():
            value = record[field]
            if kind == "str":
                assert isinstance(value, str) and value.strip()
            else:
                assert value and all(isinstance(v, str) and v.strip() for v in value)
    return records


@FUZZ
@given(
    content=st.binary(max_size=300), split=st.sampled_from(SPLITS), ext=st.sampled_from([".jsonl", ".json"])
)
def test_random_bytes_split_file(content, split, ext):
    check_split(content, split, split + ext)


@FUZZ
@given(text=st.text(max_size=300), split=st.sampled_from(SPLITS))
def test_random_text_split_file(text, split):
    check_split(text.encode("utf-8", "surrogatepass"), split, split + ".jsonl")


@FUZZ
@given(
    records=st.lists(valid_record, min_size=1, max_size=3) | st.lists(tofu_like | json_values, max_size=5),
    split=st.sampled_from(SPLITS),
    array=st.booleans(),
)
def test_random_json_structures_split_file(records, split, array):
    if array:
        content = json.dumps(records)
    else:
        content = "".join(json.dumps(r) + "\n" for r in records)
    loaded = check_split(content.encode(), split, split + (".json" if array else ".jsonl"))
    assert loaded is None or loaded == records


@FUZZ
@given(split=st.text(min_size=1, max_size=20))
def test_random_split_names(split):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "full.jsonl").write_text('{"question": "q", "answer": "a"}\n')
        try:
            records = tofu.load_split(tmp, split)
        except UnlearnError as err:
            assert "\n" not in str(err)
            return
    assert split == "full" and records == [{"question": "q", "answer": "a"}]


keys = st.sampled_from(
    [
        "train.lr",
        "train.lora.r",
        "method.params.beta",
        "data.max_samples",
        "model.dtype",
        "eval.enabled",
        "train",
    ]
) | st.text(max_size=15)
values = st.sampled_from(
    ["1e-3", "0.2", "8", "null", "true", "bfloat16", "[1, 2]", "{r: 4}", "", ".nan", "9" * 400]
) | st.text(max_size=15)
override_strings = st.text(max_size=30) | st.builds(lambda k, v: f"{k}={v}", keys, values)


@FUZZ
@given(overrides=st.lists(override_strings, max_size=4))
def test_random_overrides(overrides):
    try:
        cfg = load_config(None, overrides)
    except UnlearnError as err:
        assert "\n" not in str(err) and str(err)
        return
    assert isinstance(cfg, RunConfig) and (cfg.train.get("lr") is None or isinstance(cfg.train["lr"], float))


yaml_docs = st.text(max_size=200) | st.builds(
    lambda v: json.dumps(v),  # JSON is YAML: structured documents with sections of the wrong shape
    st.dictionaries(st.sampled_from(["data", "model", "train", "method", "eval", "out", "x"]), json_values),
)


@FUZZ
@given(doc=yaml_docs)
def test_random_yaml_documents(doc):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.yaml"
        path.write_text(doc, encoding="utf-8", errors="surrogatepass")
        try:
            cfg = load_config(path, [])
        except UnlearnError as err:
            assert "\n" not in str(err) and str(err)
            return
    assert isinstance(cfg, RunConfig)


@pytest.mark.parametrize("bad", ["[" * 5000, '{"a":' * 5000])
def test_deeply_nested_json_is_an_error_not_a_crash(tmp_path, bad):
    (tmp_path / "full.jsonl").write_text(bad)
    with pytest.raises(UnlearnError):
        tofu.load_split(tmp_path, "full")
