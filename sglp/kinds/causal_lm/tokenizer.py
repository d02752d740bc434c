"""A small byte-level BPE tokenizer trained on a local corpus (for the tiny offline LLaMA)."""

from __future__ import annotations


def train_tokenizer(text: str, vocab_size: int = 2048):
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `text`, with <s>, </s>, <pad> and <unk> tokens.
    Byte-level: every string encodes (no unknown characters), so `decode(encode(s)) == s`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )  # fmt: skip
    tok.train_from_iterator(text.splitlines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
