"""Prompt/answer formatting and collation shared by training and evaluation.

Three prompt formats (`--prompt-format`, config key `model.prompt_format`), attached to the tokenizer
with `set_prompt_format` so every encoder (training, scoring, generation) uses the same one:

- `chat` (default): the tokenizer's chat template with a generation prompt (a plain template when it
  has none); the answer is tokenized on its own and followed by EOS, which counts as an answer token.
- `plain`: "Question: {q}\\nAnswer:" + " " + answer + EOS, whatever the tokenizer.
- `open-unlearning`: open-unlearning's TOFU formatting (its `preprocess_chat_instance`): the whole
  conversation (system prompt, user question, assistant answer) rendered and tokenized in one piece,
  the answer span being everything after the tokenized generation prompt (for SmolLM2: answer,
  `<|im_end|>`, newline) plus an EOS appended when the rendering does not end in one; generations and
  ROUGE references decoded as it decodes them. Per-model settings follow its configs/model/*.yaml
  (see `open_unlearning_format`).

In `chat`/`plain` the prompt and the answer are tokenized separately and concatenated, so the label mask
covers exactly the prompt tokens whatever the tokenizer does at the boundary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

IGNORE_INDEX = -100
PLAIN_TEMPLATE = "Question: {question}\nAnswer:"
PROMPT_FORMATS = ("chat", "plain", "open-unlearning")
_ATTR = "unlearnkit_prompt_format"

# open-unlearning's per-model template_args (configs/model/*.yaml), keyed by what identifies the family.
LLAMA3_SYSTEM = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
LLAMA3_TAGS = ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>",
               "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>")
QA_TAGS = ("Question: ", "\n", "Answer: ", "\n\n")  # its Llama-2 base-model config
OU_DEFAULT_SYSTEM = "You are a helpful assistant."


@dataclass(frozen=True)
class PromptFormat:
    """How a (question, answer) pair becomes tokens; recorded in eval_meta.json as `describe()`."""

    name: str = "chat"
    system_prompt: str | None = None
    # open-unlearning only: its template_args
    apply_chat_template: bool = True
    system_prefix: str = ""  # its system_prompt_with_special_tokens (tag mode)
    tags: tuple[str, str, str, str] = ("", "", "", "")  # user_start, user_end, asst_start, asst_end

    def describe(self) -> dict:
        d = asdict(self)
        if self.name != "open-unlearning":
            for key in ("apply_chat_template", "system_prefix", "tags"):
                d.pop(key)
        return d


def open_unlearning_format(tokenizer, system_prompt: str | None = None) -> PromptFormat:
    """open-unlearning's template_args for this tokenizer's model family (its configs/model/*.yaml).

    Llama-3.x Instruct: tag mode with the fixed system prompt "You are a helpful assistant." written with
    special tokens; Qwen2.5 and Phi-3.5: the chat template with system prompt "You are a helpful
    assistant."; a tokenizer without chat template: its Llama-2 base tags "Question: ... Answer: ";
    any other chat model (SmolLM2 included, which open-unlearning ships no config for): the chat template
    with no system message, so the template's own default applies (SmolLM2: "You are a helpful AI
    assistant named SmolLM, trained by Hugging Face"). `system_prompt` overrides the family's default.
    """
    template = getattr(tokenizer, "chat_template", None) or ""
    name = str(getattr(tokenizer, "name_or_path", "")).lower()
    if "<|start_header_id|>" in template:
        system = OU_DEFAULT_SYSTEM if system_prompt is None else system_prompt
        prefix = LLAMA3_SYSTEM.format(system=system)
        return PromptFormat("open-unlearning", system, False, prefix, LLAMA3_TAGS)
    if not template:
        prefix = f"{system_prompt}\n\n" if system_prompt else ""
        return PromptFormat("open-unlearning", system_prompt, False, prefix, QA_TAGS)
    family_default = ("qwen" in name or "phi-3" in name or "You are Qwen" in template
                      or "<|assistant|>" in template)
    if system_prompt is None and family_default:
        system_prompt = OU_DEFAULT_SYSTEM
    return PromptFormat("open-unlearning", system_prompt, True)


def resolve_prompt_format(tokenizer, name: str = "chat", system_prompt: str | None = None) -> PromptFormat:
    """The PromptFormat called `name` for this tokenizer (an UnlearnError names the choices)."""
    if name not in PROMPT_FORMATS:
        from unlearnkit.errors import UnlearnError

        raise UnlearnError(f"unknown prompt format {name!r}: choose one of {', '.join(PROMPT_FORMATS)}")
    if name == "open-unlearning":
        return open_unlearning_format(tokenizer, system_prompt)
    return PromptFormat(name, system_prompt)


def set_prompt_format(tokenizer, name: str = "chat", system_prompt: str | None = None) -> PromptFormat:
    """Attach a prompt format to the tokenizer: every encoder below then uses it (training and eval)."""
    fmt = resolve_prompt_format(tokenizer, name, system_prompt)
    setattr(tokenizer, _ATTR, fmt)
    return fmt


def get_prompt_format(tokenizer) -> PromptFormat:
    """The tokenizer's attached format, `chat` when none was set."""
    return getattr(tokenizer, _ATTR, None) or PromptFormat()


def _uses_template(tokenizer, fmt: PromptFormat) -> bool:
    return fmt.name == "chat" and bool(getattr(tokenizer, "chat_template", None))


def build_prompt(tokenizer, question: str) -> str:
    """The text before the answer: the chat template when the tokenizer has one, a plain one otherwise."""
    fmt = get_prompt_format(tokenizer)
    if fmt.name == "open-unlearning":
        return _ou_texts(tokenizer, fmt, question, "")[0]
    if _uses_template(tokenizer, fmt):
        msgs = [{"role": "system", "content": fmt.system_prompt}] if fmt.system_prompt else []
        return tokenizer.apply_chat_template(
            msgs + [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
    prefix = f"{fmt.system_prompt}\n\n" if fmt.system_prompt else ""
    return prefix + PLAIN_TEMPLATE.format(question=question)


def answer_text(tokenizer, answer: str) -> str:
    """Plain prompts end in 'Answer:', so the answer starts with a space; chat prompts end in a newline."""
    fmt = get_prompt_format(tokenizer)
    if fmt.name == "open-unlearning" or _uses_template(tokenizer, fmt):
        return answer
    return " " + answer


def prompt_ids(tokenizer, question: str) -> list[int]:
    """Token ids of the prompt alone (what generation is conditioned on)."""
    fmt = get_prompt_format(tokenizer)
    if fmt.name == "open-unlearning":
        return _ou_ids(tokenizer, fmt, question, "")[0]
    # Chat templates already contain any BOS they want; plain prompts get the tokenizer's specials.
    add_special = not _uses_template(tokenizer, fmt)
    return tokenizer(build_prompt(tokenizer, question), add_special_tokens=add_special)["input_ids"]


def _ou_chat(fmt: PromptFormat, question: str, answer: str) -> list[dict]:
    chat = [{"role": "system", "content": fmt.system_prompt}] if fmt.system_prompt else []
    return chat + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def _ou_texts(tokenizer, fmt: PromptFormat, question: str, answer: str) -> tuple[str, str]:
    """(generation prompt, whole conversation) as open-unlearning renders them."""
    if fmt.apply_chat_template:
        chat = _ou_chat(fmt, question, answer)
        return (tokenizer.apply_chat_template(chat[:-1], tokenize=False, add_generation_prompt=True),
                tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False))
    user_start, user_end, asst_start, _ = fmt.tags
    prompt = fmt.system_prefix + user_start + question + user_end + asst_start
    return prompt, prompt + answer


def _as_ids(out) -> list[int]:
    """apply_chat_template(tokenize=True) returns a list or (transformers 5) a BatchEncoding."""
    return list(out) if isinstance(out, list) else list(out["input_ids"])


def _ou_ids(tokenizer, fmt: PromptFormat, question: str, answer: str) -> tuple[list[int], list[int]]:
    """(prompt ids, conversation ids ending in EOS), tokenized exactly as open-unlearning does.

    The conversation is tokenized in one piece (not prompt + answer), and its label span starts at
    len(prompt ids) without checking the boundary, as there; EOS is appended unless already last.
    """
    if fmt.apply_chat_template:
        chat = _ou_chat(fmt, question, answer)
        chat_ids = _as_ids(tokenizer.apply_chat_template(chat, tokenize=True, add_generation_prompt=False,
                                                         return_dict=False))
        p_ids = _as_ids(tokenizer.apply_chat_template(chat[:-1], tokenize=True, add_generation_prompt=True,
                                                      return_dict=False))
    else:
        prompt, full = _ou_texts(tokenizer, fmt, question, answer)
        chat_ids = list(tokenizer(full, add_special_tokens=True)["input_ids"])
        p_ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    if not chat_ids or chat_ids[-1] != tokenizer.eos_token_id:
        chat_ids = chat_ids + [tokenizer.eos_token_id]
    return p_ids, chat_ids


def rouge_strings(tokenizer, question: str, answer: str) -> tuple[str, str]:
    """(input text, ROUGE reference) for a generation: open-unlearning decodes both from token ids and
    removes the prompt text from the conversation text; the other formats use the answer as written."""
    fmt = get_prompt_format(tokenizer)
    if fmt.name != "open-unlearning":
        return tokenizer.decode(prompt_ids(tokenizer, question), skip_special_tokens=True), answer
    p_ids, chat_ids = _ou_ids(tokenizer, fmt, question, answer)
    input_text = _ou_decode(tokenizer, p_ids)
    return input_text, _ou_decode(tokenizer, chat_ids).replace(input_text, "").strip()


def _ou_decode(tokenizer, ids: list[int]) -> str:
    """decode(skip_special_tokens=True, clean_up_tokenization_spaces=True), as open-unlearning calls it.

    transformers 5 ignores the clean-up for BPE tokenizers (with a warning); we skip asking for it there,
    which gives the same text without the warning.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    bpe = backend is not None and type(backend.model).__name__ == "BPE" and not getattr(
        tokenizer, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False)
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=not bpe)


def decode_generation(tokenizer, new_ids: list[int]) -> str:
    """Generated ids (after the prompt) -> text, cut at the first EOS, stripped; open-unlearning's
    decoding also cleans up tokenization spaces (" ." -> ".")."""
    eos = tokenizer.eos_token_id
    if eos in new_ids:  # finished rows are filled with pad; cut at the first EOS
        new_ids = new_ids[: new_ids.index(eos)]
    if get_prompt_format(tokenizer).name == "open-unlearning":
        return _ou_decode(tokenizer, new_ids).strip()
    return tokenizer.decode(new_ids, skip_special_tokens=True).strip()


# An answer longer than max_length * this many characters is cut before tokenizing: no tokenizer's
# tokens average 64 characters, so the kept text still fills max_length tokens.
MAX_CHARS_PER_TOKEN = 64


@dataclass
class TruncationCounter:
    """Counts examples cut at max_length so truncation is reported, never silent."""

    truncated: int = 0
    total: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, was_truncated: bool, question: str) -> None:
        self.total += 1
        if was_truncated:
            self.truncated += 1
            if len(self.examples) < 3:
                self.examples.append(question[:80])


def encode_qa(
    tokenizer,
    question: str,
    answer: str,
    max_length: int = 512,
    counter: TruncationCounter | None = None,
) -> dict[str, list[int]]:
    """input_ids = prompt + answer + EOS; labels are -100 on the prompt, the answer ids (EOS included) after
    (open-unlearning format: the tokenized conversation, labels after the tokenized generation prompt).

    When too long, the answer is cut from the end (the prompt is kept whole); when even the prompt does
    not fit, the error says so, since no answer token would be left to train or score.
    """
    cut = len(answer) > max_length * MAX_CHARS_PER_TOKEN  # never tokenize megabytes to keep 256 tokens
    answer = answer[: max_length * MAX_CHARS_PER_TOKEN]
    question = question[: max_length * MAX_CHARS_PER_TOKEN + 1]
    fmt = get_prompt_format(tokenizer)
    if fmt.name == "open-unlearning":  # input = the conversation's ids, labels from len(prompt) on
        p_ids, chat_ids = _ou_ids(tokenizer, fmt, question, answer)
        a_ids = chat_ids[len(p_ids):]
        p_ids = chat_ids[: len(p_ids)]
    else:
        p_ids = prompt_ids(tokenizer, question)
        a_ids = tokenizer(answer_text(tokenizer, answer), add_special_tokens=False)["input_ids"]
        a_ids = a_ids + [tokenizer.eos_token_id]
    if len(p_ids) >= max_length:
        from unlearnkit.errors import UnlearnError

        raise UnlearnError(
            f"max_length={max_length} is shorter than the prompt ({len(p_ids)} tokens) of question "
            f"{question[:60]!r}: raise max_length"
        )
    truncated = cut or len(p_ids) + len(a_ids) > max_length
    a_ids = a_ids[: max_length - len(p_ids)]
    if counter is not None:
        counter.add(truncated, question)
    ids = p_ids + a_ids
    return {
        "input_ids": ids,
        "attention_mask": [1] * len(ids),
        "labels": [IGNORE_INDEX] * len(p_ids) + a_ids,
    }


def pad_batch(
    features: list[dict[str, list[int]]],
    pad_token_id: int,
    padding_side: str = "right",
) -> dict[str, torch.Tensor]:
    """Pad input_ids/attention_mask/labels (whichever are present) to the longest, on either side."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    longest = max(len(f["input_ids"]) for f in features)
    pad_values = {"input_ids": pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX}
    batch: dict[str, torch.Tensor] = {}
    for key, pad in pad_values.items():
        if key not in features[0]:
            continue
        rows = []
        for f in features:
            fill = [pad] * (longest - len(f[key]))
            rows.append(f[key] + fill if padding_side == "right" else fill + f[key])
        batch[key] = torch.tensor(rows, dtype=torch.long)
    return batch


@dataclass
class QACollator:
    """Collator for encoded QA features; use as a Trainer data_collator. `extra_keys` are per-example
    integers (e.g. a domain id) passed through as a (B,) tensor."""

    pad_token_id: int
    padding_side: str = "right"
    extra_keys: tuple[str, ...] = ()

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        keep = ("input_ids", "attention_mask", "labels")
        batch = pad_batch([{k: f[k] for k in keep if k in f} for f in features],
                          self.pad_token_id, self.padding_side)
        for key in self.extra_keys:
            batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
        return batch
