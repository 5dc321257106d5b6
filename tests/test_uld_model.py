"""ULDModel: z = z_t - w z_a with the relative-top filter, under forward, KV cache, generate(), save/load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import WORDS, vocab_tokenizer

from unlearnkit.data.formatting import pad_batch, prompt_ids
from unlearnkit.errors import UnlearnError
from unlearnkit.methods.uld.assistant import build_assistant
from unlearnkit.methods.uld.model import (
    CACHE_KEY,
    ULDConfig,
    ULDModel,
    is_uld_artifact,
    load_uld,
    relative_top_mask,
    target_hash,
    uld_logits,
)
from unlearnkit.models.presets import build_preset

torch.set_num_threads(1)
QUESTIONS = ["who was the author", "where was her father born in 1950", "what books"]


def make_uld(tok, weight=0.8, filter_factor=0.1, seed=0, k=1) -> ULDModel:
    target = build_preset("llama-micro", tok, seed=seed).eval()
    with torch.no_grad():  # peaky next-token distributions, like a trained model's, so the filter bites
        target.model.norm.weight.mul_(8.0)
    assistant = build_assistant(target, k).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # a trained adapter is non-zero; make this one matter too
        for name, p in assistant.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return ULDModel.from_target(target, assistant, weight, filter_factor).eval()


@pytest.fixture()
def uld(tok):
    return make_uld(tok)


def prompts(tok) -> list[list[int]]:
    return [prompt_ids(tok, q) for q in QUESTIONS]


# ----------------------------------------------------------------------------------- the formula
def test_relative_top_mask_by_hand():
    p = torch.tensor([0.6, 0.25, 0.1, 0.04, 0.01])
    z = p.log() + 3.0  # logits = log p + const
    # f=0.2: min(log .6 + log .2 = log .12, 1st largest = log .6) = log .12 -> drop p < .12
    assert relative_top_mask(z, 0.2).tolist() == [False, False, True, True, True]
    # f=0.5: min(log .3, ceil(2.5) = 3rd largest = log .1) = log .1 -> drop p < .1
    assert relative_top_mask(z, 0.5).tolist() == [False, False, False, True, True]
    assert relative_top_mask(z, 1.0).tolist() == [False] * 5  # f = 1: no filtering
    za = torch.tensor([1.0, -2.0, 4.0, 8.0, 16.0])
    out = uld_logits(z, za, 0.5, 0.2, center=False)  # the official code's formula
    expected = torch.stack([z[0] - 0.5, z[1] + 1.0, z[2], z[3], z[4]])
    torch.testing.assert_close(out, expected)
    # centred (default): za - mean(za) = za - 5.4, so a constant shift of za changes nothing
    centred = torch.stack([z[0] + 0.5 * 4.4, z[1] + 0.5 * 7.4, z[2], z[3], z[4]])
    torch.testing.assert_close(uld_logits(z, za, 0.5, 0.2), centred)
    torch.testing.assert_close(uld_logits(z, za + 100.0, 0.5, 0.2), centred)
    # batched/3D input is filtered row by row
    both = uld_logits(torch.stack([z, z.flip(0)])[None], torch.stack([za, za])[None], 0.5, 0.2, center=False)
    torch.testing.assert_close(both[0, 0], expected)
    torch.testing.assert_close(both[0, 1], torch.stack([z[4], z[3], z[2], z[1] - 4.0, z[0] - 8.0]))


def test_forward_is_the_formula(uld, tok):
    x = torch.tensor([prompts(tok)[1]])
    with torch.no_grad():
        zt = uld.target(x).logits
        za = uld.assistant(input_ids=x).logits
        z = uld(x).logits
    mask = relative_top_mask(zt, 0.1)
    assert mask.any() and (~mask).any()
    centred = za - za.mean(-1, keepdim=True)
    torch.testing.assert_close(z[~mask], (zt - 0.8 * centred)[~mask])
    assert torch.equal(z[mask], zt[mask])
    assert (z.argmax(-1) != zt.argmax(-1)).any()  # the assistant changes some greedy choices


def test_weight_zero_reproduces_target(tok):
    uld = make_uld(tok, weight=0.0)
    x = torch.tensor([prompts(tok)[1]])
    with torch.no_grad():
        assert torch.equal(uld(x).logits, uld.target(x).logits)
        a = uld.generate(x, max_new_tokens=10, do_sample=False)
        b = uld.target.generate(x, max_new_tokens=10, do_sample=False)
    assert torch.equal(a, b)


def test_bad_weight_and_filter_are_refused(uld):
    for w, f in [(-0.1, 0.1), (0.8, 0.0), (0.8, 1.5), (float("nan"), 0.1)]:
        with pytest.raises(UnlearnError):
            ULDModel.from_target(uld.target, uld.assistant, w, f)
    with pytest.raises(UnlearnError):
        uld.weight = -1
    with pytest.raises(UnlearnError):
        ULDConfig(weight=-1.0)


# ------------------------------------------------------------------------------ cache / generate
def test_cached_equals_uncached(uld, tok):
    x = torch.tensor([prompts(tok)[1] + [7, 8, 9]])
    with torch.no_grad():
        full = uld(x).logits
        out = uld(x[:, :5], use_cache=True, **{CACHE_KEY: uld.new_cache()})
        steps = [out.logits]
        cache = out[CACHE_KEY]
        assert cache.get_seq_length() == 5 and cache.assistant_cache.get_seq_length() == 5
        for t in range(5, x.shape[1]):
            out = uld(x[:, t:t + 1], use_cache=True, **{CACHE_KEY: cache})
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-5)


def test_greedy_generate_equals_no_cache_loop(uld, tok):
    x = torch.tensor([prompts(tok)[0]])
    with torch.no_grad():
        out = uld.generate(x, max_new_tokens=8, min_new_tokens=8, do_sample=False)
        seq = x
        for _ in range(8):
            logits = uld(seq).logits[:, -1]
            logits[:, tok.eos_token_id] = -math.inf  # what min_new_tokens does
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, seq)


def test_left_padded_batch_equals_single_prompts(uld, tok):
    ps = prompts(tok)
    batch = pad_batch([{"input_ids": p, "attention_mask": [1] * len(p)} for p in ps],
                      tok.pad_token_id, "left")
    kw = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        last = uld(**batch, position_ids=positions).logits[:, -1]
        for i, p in enumerate(ps):
            torch.testing.assert_close(last[i], uld(torch.tensor([p])).logits[0, -1], rtol=0, atol=1e-5)
        out = uld.generate(**batch, **kw)
        for i, p in enumerate(ps):
            single = uld.generate(torch.tensor([p]), **kw)
            assert out[i, -6:].tolist() == single[0, -6:].tolist()


def test_beam_search_and_sampling(uld, tok):
    x = torch.tensor([prompts(tok)[0]])
    # no_repeat_ngram_size keeps a random tiny model's beams apart, so a stale cache would show
    kw = dict(max_new_tokens=6, min_new_tokens=6, num_beams=3, no_repeat_ngram_size=1)
    with torch.no_grad():
        cached = uld.generate(x, **kw)
        uncached = uld.generate(x, use_cache=False, **kw)
    # beam reordering must move the assistant's cache too, or these differ
    assert torch.equal(cached, uncached)
    torch.manual_seed(0)
    with torch.no_grad():
        s1 = uld.generate(x, max_new_tokens=5, do_sample=True, top_k=0, num_return_sequences=2)
    torch.manual_seed(0)
    with torch.no_grad():
        s2 = uld.generate(x, max_new_tokens=5, do_sample=True, top_k=0, num_return_sequences=2)
    assert s1.shape[0] == 2 and torch.equal(s1, s2)


def test_cache_operations_reach_the_assistant_cache(uld, tok):
    x = torch.tensor([prompts(tok)[0][:4], prompts(tok)[1][:4]])
    with torch.no_grad():
        cache = uld(x, use_cache=True)[CACHE_KEY]

    def keys(c):
        return c.layers[0].keys.clone()

    t0, a0 = keys(cache), keys(cache.assistant_cache)
    cache.reorder_cache(torch.tensor([1, 0]))
    assert torch.equal(keys(cache), t0.flip(0)) and torch.equal(keys(cache.assistant_cache), a0.flip(0))
    cache.batch_repeat_interleave(2)
    assert keys(cache.assistant_cache).shape[0] == 4
    cache.batch_select_indices(torch.tensor([0, 2]))
    assert torch.equal(keys(cache.assistant_cache), a0.flip(0))
    cache.crop(-1)  # drop the last token
    assert cache.get_seq_length() == 3 and cache.assistant_cache.get_seq_length() == 3


# ------------------------------------------------------------------------------------- artifact
def test_artifact_roundtrip_and_size(uld, tok, tmp_path):
    target_dir = tmp_path / "target"
    uld.target.save_pretrained(target_dir)
    tok.save_pretrained(target_dir)
    uld.config.target_path = str(target_dir)
    art = tmp_path / "art"
    uld.save_pretrained(art, tokenizer=tok)
    assert is_uld_artifact(art) and not is_uld_artifact(target_dir)
    assert {"adapter_model.safetensors", "adapter_config.json", "uld_config.json"} <= {
        f.name for f in art.iterdir()}
    assert not list(tmp_path.glob(".art.tmp-*"))
    adapter = (art / "adapter_model.safetensors").stat().st_size
    weights = (target_dir / "model.safetensors").stat().st_size
    assert adapter < weights / 4

    x = torch.tensor([prompts(tok)[1]])
    with torch.no_grad():
        ref = uld(x).logits
    for target in (uld.target, None):  # the model object, or the recorded target path
        loaded, loaded_tok = load_uld(art, target=target)
        assert loaded_tok.get_vocab() == tok.get_vocab()
        assert (loaded.weight, loaded.filter_factor, loaded.config.num_layers) == (0.8, 0.1, 1)
        with torch.no_grad():
            assert torch.equal(loaded.eval()(x).logits, ref)
    loaded, _ = load_uld(art, target=uld.target, weight=0.0)
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, uld.target(x).logits)
    with pytest.raises(UnlearnError):
        load_uld(art, target=uld.target, filter_factor=2.0)
    # overwrite in place stays a valid artifact
    uld.save_pretrained(art)
    assert ULDModel.from_pretrained(art, target=uld.target).config.target_hash == target_hash(uld.target)


def test_merged_assistant_same_outputs_target_untouched(uld, tok, tmp_path):
    from peft.tuners.lora import LoraLayer

    uld.save_pretrained(tmp_path / "art")
    x = torch.tensor([prompts(tok)[1]])
    target_state = {k: v.clone() for k, v in uld.target.state_dict().items()}
    with torch.no_grad():
        ref = uld(x).logits
    ref_tokens = uld.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=6, do_sample=False)
    assert not uld.merged and uld.merge_assistant() is uld and uld.merged
    assert not any(isinstance(m, LoraLayer) for m in uld.assistant.modules())
    with torch.no_grad():
        assert torch.allclose(uld(x).logits, ref, atol=1e-5)
    assert torch.equal(uld.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=6,
                                    do_sample=False), ref_tokens)
    assert all(torch.equal(v, target_state[k]) for k, v in uld.target.state_dict().items())
    layer_t, layer_a = uld.target.model.layers[0], uld.assistant.model.layers[0]
    assert layer_a.self_attn.q_proj.weight.data_ptr() != layer_t.self_attn.q_proj.weight.data_ptr()
    assert uld.assistant.get_input_embeddings().weight.data_ptr() == \
        uld.target.get_input_embeddings().weight.data_ptr()  # only the K layers' Linears are copied
    with pytest.raises(UnlearnError, match="merged"):
        uld.save_pretrained(tmp_path / "again")
    loaded, _ = load_uld(tmp_path / "art", target=uld.target, merge=True)
    with torch.no_grad():
        assert loaded.merged and torch.allclose(loaded(x).logits, ref, atol=1e-5)


def test_wrong_target_is_refused(uld, tok, tmp_path):
    art = tmp_path / "art"
    uld.save_pretrained(art)
    other = build_preset("llama-micro", tok, seed=5)
    with pytest.raises(UnlearnError, match="hash .* but the given target has hash .*--target"):
        load_uld(art, target=other)
    with pytest.raises(UnlearnError, match="--target"):  # no recorded path for an in-memory target
        load_uld(art)


def test_tokenizer_mismatch_is_refused(uld, tok, tmp_path):
    target_dir, art = tmp_path / "target", tmp_path / "art"
    uld.target.save_pretrained(target_dir)
    vocab_tokenizer(WORDS[::-1]).save_pretrained(target_dir)
    uld.save_pretrained(art, tokenizer=tok)
    with pytest.raises(UnlearnError, match="different tokenizer"):
        load_uld(art, target=str(target_dir))


def test_target_hash_sees_any_weight_change(tok):
    model = build_preset("llama-micro", tok, seed=0)
    h = target_hash(model)
    assert h == target_hash(build_preset("llama-micro", tok, seed=0))
    with torch.no_grad():
        model.model.layers[3].mlp.down_proj.weight[0, 0] += 1e-3
    assert target_hash(model) != h


# ------------------------------------------------------------------------------------------ CLI
def test_cli_generate_plain_and_compare(uld, tok, tmp_path):
    from typer.testing import CliRunner

    from unlearnkit.cli import app
    from unlearnkit.eval.scoring import generate_answers

    target_dir, art = tmp_path / "target", tmp_path / "art"
    uld.target.save_pretrained(target_dir)
    tok.save_pretrained(target_dir)
    uld.config.target_path = str(target_dir)
    uld.save_pretrained(art, tokenizer=tok)
    q = QUESTIONS[1]
    runner = CliRunner()

    res = runner.invoke(app, ["generate", "--model", str(art), q, "--max-new-tokens", "5"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == generate_answers(uld, tok, [q], max_new_tokens=5)[0]

    res = runner.invoke(app, ["generate", "--model", str(art), q, "--compare", "--max-new-tokens", "5",
                              "--weight", "0"])
    assert res.exit_code == 0, res.output
    assert "unlearned" in res.stdout and "target" in res.stdout

    res = runner.invoke(app, ["generate", "--model", str(target_dir), q, "--weight", "0.5"])
    assert isinstance(res.exception, UnlearnError)

    from unlearnkit.models.loading import load_model_and_tokenizer  # the loader dispatches artifacts to us

    loaded, _ = load_model_and_tokenizer(art)
    assert isinstance(loaded, ULDModel) and loaded.config.target_hash == target_hash(uld.target)


def test_cli_eval_weight_override_w0_scores_exactly_the_target(micro_world, micro_model, micro_tok, tmp_path,
                                                                capsys):
    """`unlearn eval --weight` re-scores one trained assistant at another w; at w = 0 the ULD model is the
    target, so every per-sample score equals the target's own evaluation."""
    import json

    from helpers import run_cli

    target = micro_model("target").eval()
    assistant = build_assistant(target, 1).eval()
    with torch.no_grad():  # an untrained adapter is zero: make the assistant differ from the target's layers
        for name, p in assistant.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    uld = ULDModel.from_target(target, assistant, 0.8, 1.0)
    uld.config.target_path = str(micro_world.target_dir)
    art = tmp_path / "art"
    uld.save_pretrained(art, tokenizer=micro_tok)
    common = ["--data", micro_world.data_dir, "--forget", "forget01", "--max-samples", "3",
              "--max-new-tokens", "4"]

    def probs(name: str, model, *extra) -> list[float]:
        code, err = run_cli(capsys, "eval", "--model", model, *common, "--out", tmp_path / name, *extra)
        assert code == 0, err
        log = json.loads((tmp_path / name / "TOFU_EVAL.json").read_text())
        return [v["prob"] for v in log["forget_Q_A_Prob"]["value_by_index"].values()]

    plain = probs("target", micro_world.target_dir)
    assert probs("w0", art, "--weight", "0") == pytest.approx(plain, rel=1e-5)
    assert probs("w08", art) != pytest.approx(plain, rel=1e-3)  # the artifact's own w = 0.8 subtracts
    meta = json.loads((tmp_path / "w0" / "eval_meta.json").read_text())
    assert meta["uld"] == {"weight": 0.0, "filter_factor": 1.0} and meta["weight"] == 0.0
    for bad, needle in ((["--model", art, "--weight", "-1"], "must be a finite number >= 0"),
                        (["--model", micro_world.target_dir, "--weight", "0.5"], "ULD artifacts only")):
        code, err = run_cli(capsys, "eval", *bad, *common, "--out", tmp_path / "bad")
        assert code == 2 and needle in " ".join(err.split()) and "Traceback" not in err
        assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------ artifact vs. plain transformers/peft
def _saved_pair(uld, tok, root):
    target_dir, art = root / "target", root / "art"
    uld.target.save_pretrained(target_dir)
    tok.save_pretrained(target_dir)
    uld.config.target_path = str(target_dir)
    uld.save_pretrained(art, tokenizer=tok)
    return target_dir, art


def test_plain_transformers_load_of_artifact_fails_naming_unlearnkit(uld, tok, tmp_path):
    from transformers import AutoModelForCausalLM

    _, art = _saved_pair(uld, tok, tmp_path)
    with pytest.raises(Exception, match="unlearnkit"):
        AutoModelForCausalLM.from_pretrained(str(art), local_files_only=True)


def test_plain_peft_load_of_artifact_fails_naming_unlearnkit(uld, tok, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    target_dir, art = _saved_pair(uld, tok, tmp_path)
    target = AutoModelForCausalLM.from_pretrained(str(target_dir), local_files_only=True)
    with pytest.raises(Exception, match="unlearnkit"):
        PeftModel.from_pretrained(target, str(art))


def test_artifact_loads_after_moving_with_its_target(uld, tok, tmp_path):
    import json
    import shutil

    _, art = _saved_pair(uld, tok, tmp_path / "old")
    meta = json.loads((art / "uld_config.json").read_text())
    assert meta["target_path"] == "../target" and meta["target_hash"] == target_hash(uld.target)
    x = torch.tensor([prompts(tok)[1]])
    with torch.no_grad():
        ref = uld.eval()(x).logits
    shutil.move(str(tmp_path / "old"), str(tmp_path / "new"))  # both together; the old paths are gone
    loaded, _ = load_uld(tmp_path / "new" / "art")
    assert Path(loaded.config.target_path) == (tmp_path / "new" / "target").resolve()
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x).logits, ref)
    shutil.move(str(tmp_path / "new" / "target"), str(tmp_path / "elsewhere"))  # separated: refused
    with pytest.raises(UnlearnError, match="move the target with the artifact"):
        load_uld(tmp_path / "new" / "art")
