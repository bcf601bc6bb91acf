"""Tiny tokenizers and models built in the tests (no download, seconds to make)."""

from __future__ import annotations

import functools

import torch
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

TRAINING_TEXT = """\
Sherlock Holmes lived at Baker Street with Doctor Watson. Holmes played the violin and smoked a pipe.
Mrs Hudson kept the house. Inspector Lestrade of Scotland Yard often asked Holmes for help.
Professor Moriarty was the Napoleon of crime. Holmes's brother Mycroft sat in the Diogenes Club.
The weather in London was grey, and the fog lay thick over the river. A cab rattled past the window.
She said that the garden was full of roses, and that the tea was ready at four o'clock in the afternoon.
Numbers like 221, 1887 and 17 appear in the stories; so do words like elementary, deduce and observe.
Café naïve résumé — unicode text, quotes "like this" and 'this', and tabs\tand  double  spaces.
"""


def _corpus() -> list[str]:
    return TRAINING_TEXT.splitlines() * 20


@functools.lru_cache(maxsize=None)
def _byte_level_tokenizer(vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_corpus(), trainer)
    return tokenizer


@functools.lru_cache(maxsize=None)
def _sentencepiece_style_tokenizer(vocab_size: int) -> Tokenizer:
    """BPE over a Metaspace pre-tokenizer with byte fallback, like Llama-2's tokenizer."""
    tokenizer = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<eos>", *byte_tokens])
    tokenizer.train_from_iterator(_corpus(), trainer)
    return tokenizer


def byte_level_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=_byte_level_tokenizer(vocab_size), eos_token="<eos>", pad_token="<eos>"
    )


def sentencepiece_tokenizer(vocab_size: int = 500) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=_sentencepiece_style_tokenizer(vocab_size),
        eos_token="<eos>",
        pad_token="<eos>",
        unk_token="<unk>",
    )


def tiny_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


def tiny_model_and_tokenizer(seed: int = 0) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    tokenizer = byte_level_tokenizer()
    return tiny_model(len(tokenizer), seed), tokenizer


def save_tiny_model(folder, seed: int = 0) -> None:
    """A `from_pretrained` folder with a tiny random Llama and a byte-level BPE tokenizer."""
    model, tokenizer = tiny_model_and_tokenizer(seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
