"""Formatting masks exactly the prompt tokens, appends EOS, and pads correctly on both sides."""

from __future__ import annotations

import copy

import pytest

from unlearnkit.data.formatting import IGNORE_INDEX, PLAIN_TEMPLATE, TruncationCounter, encode_qa, pad_batch
from unlearnkit.errors import UnlearnError

Q, A = "Where was the author Basil Mahfouz born?", "He was born in Kuwait City."


@pytest.fixture(scope="module")
def chat_tok(smollm2):
    return smollm2[1]


@pytest.fixture(scope="module")
def plain_tok(chat_tok):
    tok = copy.deepcopy(chat_tok)
    tok.chat_template = None
    return tok


def split_by_mask(tok, enc):
    n_prompt = sum(1 for x in enc["labels"] if x == IGNORE_INDEX)
    assert enc["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt  # the mask is one prefix
    assert enc["labels"][n_prompt:] == enc["input_ids"][n_prompt:]
    return enc["input_ids"][:n_prompt], enc["input_ids"][n_prompt:]


def test_chat_template_masks_prompt_token_by_token(chat_tok):
    enc = encode_qa(chat_tok, Q, A)
    prompt, answer = split_by_mask(chat_tok, enc)
    expected_prompt = chat_tok.apply_chat_template([{"role": "user", "content": Q}], tokenize=True,
                                                   add_generation_prompt=True, return_dict=False)
    assert prompt == list(expected_prompt)
    assert chat_tok.convert_ids_to_tokens(prompt[-4:]) == ["<|im_start|>", "ass", "istant", "Ċ"]
    assert answer[-1] == chat_tok.eos_token_id
    assert chat_tok.decode(answer) == A + "<|im_end|>"


def test_plain_template_masks_prompt_token_by_token(plain_tok):
    enc = encode_qa(plain_tok, Q, A)
    prompt, answer = split_by_mask(plain_tok, enc)
    assert plain_tok.decode(prompt) == PLAIN_TEMPLATE.format(question=Q)
    assert plain_tok.decode(answer) == " " + A + plain_tok.eos_token
    assert plain_tok.convert_ids_to_tokens(answer[:1]) == ["ĠHe"]


def test_truncation_is_counted_and_prompt_kept(chat_tok):
    counter = TruncationCounter()
    full = encode_qa(chat_tok, Q, A, counter=counter)
    n_prompt = full["labels"].count(IGNORE_INDEX)
    cut = encode_qa(chat_tok, Q, A, max_length=n_prompt + 3, counter=counter)
    assert cut["input_ids"] == full["input_ids"][: n_prompt + 3]
    assert (counter.truncated, counter.total) == (1, 2)
    with pytest.raises(UnlearnError, match="shorter than the prompt"):
        encode_qa(chat_tok, Q, A, max_length=n_prompt)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_both_sides(chat_tok, side):
    feats = [encode_qa(chat_tok, Q, A), encode_qa(chat_tok, "Who?", "Nobody.")]
    batch = pad_batch(feats, chat_tok.pad_token_id, side)
    n = batch["input_ids"].shape[1]
    for row, f in enumerate(feats):
        k = len(f["input_ids"])
        real = slice(0, k) if side == "right" else slice(n - k, n)
        pad = slice(k, n) if side == "right" else slice(0, n - k)
        assert batch["input_ids"][row, real].tolist() == f["input_ids"]
        assert batch["labels"][row, real].tolist() == f["labels"]
        assert batch["attention_mask"][row, real].tolist() == [1] * k
        assert (batch["attention_mask"][row, pad] == 0).all()
        assert (batch["labels"][row, pad] == IGNORE_INDEX).all()


# --- prompt formats -------------------------------------------------------------------------------

from unlearnkit.data.formatting import (  # noqa: E402
    decode_generation,
    get_prompt_format,
    prompt_ids,
    rouge_strings,
    set_prompt_format,
)


@pytest.fixture()
def fresh_tok(chat_tok):
    return copy.deepcopy(chat_tok)


def test_chat_format_is_todays_default(chat_tok, fresh_tok):
    set_prompt_format(fresh_tok, "chat")
    assert encode_qa(fresh_tok, Q, A) == encode_qa(chat_tok, Q, A)
    assert get_prompt_format(chat_tok).name == "chat"


def test_open_unlearning_scores_the_rendered_conversation(fresh_tok):
    """open-unlearning's preprocess_chat_instance: the whole chat tokenized at once, labels after the
    generation prompt, EOS appended: for SmolLM2 the answer span is answer, <|im_end|>, newline, EOS."""
    fmt = set_prompt_format(fresh_tok, "open-unlearning")
    assert fmt.apply_chat_template and fmt.system_prompt is None  # SmolLM2: template's own system message
    enc = encode_qa(fresh_tok, Q, A)
    prompt, answer = split_by_mask(fresh_tok, enc)
    chat = [{"role": "user", "content": Q}, {"role": "assistant", "content": A}]
    conv = fresh_tok.apply_chat_template(chat, tokenize=True, return_dict=False)
    assert enc["input_ids"] == list(conv) + [fresh_tok.eos_token_id]
    assert prompt == list(fresh_tok.apply_chat_template(chat[:1], tokenize=True, add_generation_prompt=True,
                                                        return_dict=False))
    assert fresh_tok.decode(answer) == A + "<|im_end|>\n<|im_end|>"
    assert prompt_ids(fresh_tok, Q) == prompt
    assert "You are a helpful AI assistant named SmolLM" in fresh_tok.decode(prompt)
    assert rouge_strings(fresh_tok, Q, A)[1] == A


def test_system_prompt_replaces_the_template_default(fresh_tok):
    set_prompt_format(fresh_tok, "open-unlearning", "You are a helpful assistant.")
    text = fresh_tok.decode(prompt_ids(fresh_tok, Q))
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert "SmolLM" not in text


def test_open_unlearning_tag_mode_without_chat_template(plain_tok):
    """A tokenizer without chat template gets open-unlearning's base-model tags (Question:/Answer:)."""
    tok = copy.deepcopy(plain_tok)
    fmt = set_prompt_format(tok, "open-unlearning")
    assert not fmt.apply_chat_template
    enc = encode_qa(tok, Q, A)
    assert enc["input_ids"] == tok(f"Question: {Q}\nAnswer: {A}")["input_ids"] + [tok.eos_token_id]
    assert tok.decode(prompt_ids(tok, Q)) == f"Question: {Q}\nAnswer: "
    # Its positional label span: the prompt alone ends in a lone space token, which the conversation
    # merges into " He", so the first labelled token is the one after " He" (as in open-unlearning).
    n_prompt = len(prompt_ids(tok, Q))
    assert enc["labels"] == [IGNORE_INDEX] * n_prompt + enc["input_ids"][n_prompt:]
    assert tok.decode(enc["input_ids"][n_prompt:]) == A[len("He"):] + tok.eos_token


def test_plain_format_ignores_the_chat_template(fresh_tok):
    set_prompt_format(fresh_tok, "plain")
    prompt, answer = split_by_mask(fresh_tok, encode_qa(fresh_tok, Q, A))
    assert fresh_tok.decode(prompt) == PLAIN_TEMPLATE.format(question=Q)
    assert fresh_tok.decode(answer) == " " + A + fresh_tok.eos_token


def test_generation_decoding_cuts_at_eos(fresh_tok):
    set_prompt_format(fresh_tok, "open-unlearning")
    ids = fresh_tok(" He was born.", add_special_tokens=False)["input_ids"]
    assert decode_generation(fresh_tok, ids + [fresh_tok.eos_token_id] + ids) == "He was born."


def test_unknown_format_is_refused(fresh_tok):
    with pytest.raises(UnlearnError, match="unknown prompt format"):
        set_prompt_format(fresh_tok, "llama")
