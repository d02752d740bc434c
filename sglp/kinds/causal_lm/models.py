"""Causal LMs: a tiny LLaMA built from config (pretrained here on a local corpus) and loading of any Hugging Face
causal LM from a local directory or the hub (bf16, device_map) with a clear message when it cannot be had."""

from __future__ import annotations

from pathlib import Path

import torch

from sglp.core.errors import CheckpointError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def tiny_llama(
    vocab_size: int, layers: int = 12, hidden: int = 128, heads: int = 4, kv_heads: int = 2, mlp: int = 384,
    max_len: int = 256, pad_token_id: int | None = 0, bos_token_id: int | None = 1, eos_token_id: int | None = 2,
):  # fmt: skip
    """A LLaMA-architecture model small enough to pretrain on a 2-core CPU (about 2.6 M parameters at the defaults)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=max_len,
        pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    return LlamaForCausalLM(cfg)


def load_causal_lm(path: str, dtype: str = "auto", device_map: str | None = None):
    """(model, tokenizer) from a local directory (config + safetensors + tokenizer) or a hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise CheckpointError(f"dtype={dtype!r}: choose one of {sorted(DTYPES)}")
    local = Path(path).expanduser()
    if not local.exists() and (path.startswith((".", "/", "~")) or path.count("/") != 1):
        raise CheckpointError(f"no model directory at {local}: pretrain one (mode=pretrain) or set model.path")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(local) if local.exists() else path)
        model = AutoModelForCausalLM.from_pretrained(
            str(local) if local.exists() else path, dtype=DTYPES[dtype], device_map=device_map
        )
    except OSError as e:  # offline, gated, or not a model directory
        raise CheckpointError(
            f"cannot load {path}: {str(e).splitlines()[0]}. Hub models need internet and, for gated ones such as "
            "LLaMA-3.1, an accepted licence and `huggingface-cli login`; or download once and set model.path to "
            "the local directory."
        ) from None
    except Exception as e:  # noqa: BLE001 - a damaged file: tokenizers, safetensors and json raise their own types
        first = (str(e).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"cannot load {path}: a file in it is damaged ({type(e).__name__}: {first}). Fix: re-create the folder "
            "(`python run.py model=<model> mode=pretrain overwrite=true`) or download the model again."
        ) from None
    return model.eval(), tokenizer


def llama_from_config(**config):
    """A LLaMA-architecture causal LM built from `LlamaConfig` fields (random weights; build it on the meta device
    to size a model without memory, e.g. LLaMA-3.1-8B's published config in configs/model/llama3_1_8b.yaml)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(**config))


def pretrained_config(path: str):
    """The `transformers` config of a model folder or hub id (its config.json only: no weights are read)."""
    from transformers import AutoConfig

    local = Path(path).expanduser()
    try:
        return AutoConfig.from_pretrained(str(local) if local.exists() else path)
    except (OSError, ValueError) as e:  # offline / not found / not a model folder / unknown model_type
        raise CheckpointError(
            f"model.path={path}: no readable config.json ({str(e).splitlines()[0][:160]}). Fix: a local model "
            "folder, or a hub id with internet (and, for gated models, `huggingface-cli login`)."
        ) from None


def causal_lm_from_config(path: str):
    """The decoder LM that `path`'s config.json describes, with random weights (build it on the meta device to size
    a model without memory or download): the architecture of any Hugging Face causal LM, by name."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(pretrained_config(path))
