"""A small byte-level BPE tokenizer trained on the world's own text, saved as a HF fast tokenizer.

Why not SmolLM2's 49k vocabulary: on the tiny presets the embedding matrix would dominate the model
(see presets.py) and slow every step; a few thousand tokens cover the world's text compactly.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BOS, EOS, PAD = "<|im_start|>", "<|im_end|>", "<|pad|>"
# ChatML, like SmolLM2-Instruct: the prompt ends with "<|im_start|>assistant\n", the answer with EOS.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(texts: list[str], vocab_size: int = 3000):
    """Byte-level BPE on `texts` (every byte is representable, so unseen names still tokenize)."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    # Templates add "user", "assistant" and newlines; include them so they become single tokens.
    extra = ["user\n", "assistant\n", "\n"] * 50
    tok.train_from_iterator(sorted(texts) + extra, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token=EOS, pad_token=PAD,
                                   padding_side="right")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_tokenizer(tokenizer, out_dir: Path) -> None:
    """save_pretrained into out_dir atomically (temp dir, rename)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
