"""Recovery after layer removal: LoRA adapters (peft) trained with AdamW, then merged back (optional)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from sglp.core import validation
from sglp.core.device import model_device
from sglp.core.errors import InvalidArgument

LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoRAConfig:
    """LoRA + AdamW recovery. `steps` optimiser steps of `batch_size` x `grad_accum` sequences; linear warm-up
    over `warmup_steps`, then linear decay to zero."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LLAMA_TARGETS))
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    bf16: bool = False  # autocast in bfloat16 (GPU)
    merge: bool = True  # merge the adapters into the weights afterwards (a plain model of the same class)

    def __post_init__(self) -> None:
        validation.integer("rank", self.rank)
        validation.number("alpha", self.alpha, strict=True)
        validation.number("dropout", self.dropout, maximum=1.0)
        validation.number("lr", self.lr, strict=True)
        validation.number("weight_decay", self.weight_decay)
        validation.integer("warmup_steps", self.warmup_steps, minimum=0)
        validation.integer("steps", self.steps)
        validation.integer("batch_size", self.batch_size)
        validation.integer("grad_accum", self.grad_accum)
        validation.number("max_grad_norm", self.max_grad_norm, strict=True)
        if not self.target_modules:
            raise InvalidArgument("target_modules=[] adapts nothing: list the linear layers to adapt")

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        return self.lr * max(0.0, (self.steps - step) / max(1, self.steps - self.warmup_steps))


# PEFT's name for every linear (and GPT-2 Conv1D) layer but the output head: any decoder family, no names needed.
ALL_LINEAR = "all-linear"


def lora_finetune(model: nn.Module, data, config: LoRAConfig, seed: int = 0, progress: bool = True):
    """Train LoRA adapters on `data.train_batches` (causal LM loss); returns (model, per-step losses).
    With `config.merge` the returned model is `model`'s own class with the adapters merged in."""
    from peft import LoraConfig, get_peft_model

    if config.steps < 1 or config.rank < 1:
        raise InvalidArgument(f"LoRA needs steps >= 1 and rank >= 1 (got steps={config.steps}, rank={config.rank})")
    torch.manual_seed(seed)
    targets = ALL_LINEAR if list(config.target_modules) == [ALL_LINEAR] else list(config.target_modules)
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in config.target_modules if t not in names] if targets != ALL_LINEAR else []
    if missing:
        raise InvalidArgument(
            f"LoRA target_modules {missing} are not linear layers of this model (it has {sorted(names)})"
        )
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    peft_model = get_peft_model(
        model,
        LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                   target_modules=targets, task_type="CAUSAL_LM"),
    )  # fmt: skip
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    device = model_device(model)
    losses: list[float] = []
    peft_model.train()
    epoch, step, t0 = 0, 0, time.perf_counter()
    bar = tqdm(total=config.steps, desc="LoRA", leave=False, disable=not progress)
    while step < config.steps:
        batches = iter(data.train_batches(config.batch_size, seed=seed, epoch=epoch))
        epoch += 1
        exhausted = False
        while step < config.steps and not exhausted:
            for g in opt.param_groups:
                g["lr"] = config.lr_at(step)
            total = 0.0
            for _ in range(config.grad_accum):
                try:
                    ids, _ = next(batches)
                except StopIteration:
                    exhausted = True
                    break
                ids = ids.to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                    loss = peft_model(input_ids=ids, labels=ids, use_cache=False).loss / config.grad_accum
                loss.backward()
                total += loss.item()
            if exhausted and total == 0.0:
                break
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(total)
            step += 1
            bar.update(1)
            tokens = step * config.batch_size * config.grad_accum * ids.shape[1]
            bar.set_postfix(
                loss=f"{total:.3f}", ppl=f"{math.exp(min(total, 50)):.1f}",
                tok_s=f"{tokens / (time.perf_counter() - t0):.0f}",
            )  # fmt: skip
        if epoch > 10_000:
            raise InvalidArgument("LoRA: the training split yields no batch of this size")
    bar.close()
    peft_model.eval()
    if config.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    return (peft_model.merge_and_unload() if config.merge else peft_model), losses
