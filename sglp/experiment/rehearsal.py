"""Rehearsal of a GPU job on a CPU: the real code on every stage, on synthetic data of the real shapes.

Like Lightning's `fast_dev_run`: a user learns in minutes that a twelve-hour job will not die at hour eleven. Only
what the rehearsal cannot have is replaced: the data (random examples of the dataset's real shape and class count,
or a random-word corpus), the weights (random, no checkpoint or download) and, for LLMs, the width (the real layer
count and config types at a tiny hidden size). Every stage after data loading is the job's own: model build, CKA,
segmentation, search, surgery, fine-tuning, evaluation, the result row, W&B (offline) and the table.

These are pure helpers; run.py applies them to a job's config (`rehearse=true`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import torch

from sglp.data.batches import ImageSplits
from sglp.data.radio import SignalSplits, split_signals

REHEARSAL_SIZES = {"train": 64, "calib": 64, "test": 32}  # examples of each split


def synthetic_splits(
    name: str, input_shape: Sequence[int], num_classes: int, seed: int = 0, sizes: dict[str, int] | None = None
) -> ImageSplits | SignalSplits:
    """Random examples of `input_shape` with random labels: the real dataset's shape and class count, none of its
    content. Images (C, H, W) come as uint8 `ImageSplits` (normalised per batch as real images are), signals (C, L)
    as float `SignalSplits`."""
    sizes = {**REHEARSAL_SIZES, **(sizes or {})}
    g = torch.Generator().manual_seed(seed)
    n = sizes["train"] + sizes["calib"] + sizes["test"]
    y = torch.randint(0, num_classes, (n,), generator=g)
    if len(input_shape) == 2:  # signals
        x = torch.randn(n, *input_shape, generator=g)
        classes = [str(c) for c in range(num_classes)]
        return split_signals(f"{name}-rehearsal", x, y, classes, sizes["test"] / n, sizes["calib"], seed)
    x = torch.randint(0, 256, (n, *input_shape), generator=g, dtype=torch.uint8)
    channels = int(input_shape[0])
    test = n - sizes["test"]
    return ImageSplits.from_train_test(
        f"{name}-rehearsal", (x[:test], y[:test]), (x[test:], y[test:]), sizes["calib"], seed,
        num_classes=num_classes, mean=(0.5,) * channels, std=(0.25,) * channels,
    )  # fmt: skip


def synthetic_corpus(path: str | Path, words: int = 20_000, vocabulary: int = 300, seed: int = 0) -> Path:
    """A random-word text (lines of 8-16 words from a fixed vocabulary) for a rehearsal LLM's tokenizer and data."""
    rng = random.Random(seed)
    lexicon = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 7))) for _ in range(vocabulary)
    ]
    lines, n = [], 0
    while n < words:
        k = rng.randint(8, 16)
        lines.append(" ".join(rng.choice(lexicon) for _ in range(k)))
        n += k
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_width(arch: dict, hidden: int = 64, vocab_size: int = 512) -> dict:
    """A decoder config with the real layer count and config types at a tiny width: heads and KV heads keep their
    ratio (grouped-query attention stays grouped), the MLP keeps its expansion ratio (rounded)."""
    heads, kv = int(arch.get("num_attention_heads", 4)), int(arch.get("num_key_value_heads", 4))
    new_heads = 4
    new_kv = max(1, new_heads * kv // heads)
    ratio = float(arch.get("intermediate_size", 4 * arch.get("hidden_size", hidden))) / float(
        arch.get("hidden_size", hidden)
    )
    return {
        **arch,
        "hidden_size": hidden,
        "intermediate_size": int(round(hidden * ratio / 8)) * 8,
        "num_attention_heads": new_heads,
        "num_key_value_heads": new_kv,
        "vocab_size": vocab_size,
        "max_position_embeddings": 512,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }


def tiny_pretrained_config(config, hidden: int = 64, vocab_size: int = 512):
    """A `transformers` config at a tiny width with the real layer count and family (`tiny_width`'s rules), set
    through the config's own attribute names (e.g. GPT-2's n_embd is its hidden_size)."""
    shape_keys = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads")
    fields = {k: getattr(config, k) for k in shape_keys if getattr(config, k, None) is not None}
    tiny = tiny_width(fields, hidden=hidden, vocab_size=vocab_size)
    for key in (*fields, "vocab_size"):
        setattr(config, key, tiny[key])
    if getattr(config, "head_dim", None) is not None:  # families that state it (Qwen3, Gemma): width / heads
        config.head_dim = hidden // tiny["num_attention_heads"]
    for key in ("max_position_embeddings", "n_positions"):
        if getattr(config, key, None) is not None:
            setattr(config, key, 512)
    return config


def rehearsal_llm(arch: dict, corpus: Path, out_dir: str | Path, vocab_size: int = 512) -> Path:
    """Build the tiny-width decoder of `arch` (random weights) with a tokenizer fitted on `corpus`, saved as a model
    directory the LLM job loads like any other. `arch`: LLaMA config fields (`llama_from_config`), or a `path`
    whose config.json names the family (`causal_lm_from_config`, model=hf_causal_lm)."""
    from transformers import AutoModelForCausalLM

    from sglp.kinds.causal_lm.models import llama_from_config, pretrained_config
    from sglp.kinds.causal_lm.tokenizer import train_tokenizer

    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(corpus.read_text(encoding="utf-8"), vocab_size)
    special = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
               "eos_token_id": tokenizer.eos_token_id}  # fmt: skip
    torch.manual_seed(0)
    if "path" in arch:
        config = tiny_pretrained_config(pretrained_config(arch["path"]), vocab_size=len(tokenizer))
        for key, value in special.items():
            setattr(config, key, value)
        model = AutoModelForCausalLM.from_config(config)
    else:
        config = tiny_width({k: v for k, v in arch.items() if k != "_target_"}, vocab_size=len(tokenizer))
        model = llama_from_config(**{**config, **special})
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
