"""SGD training and evaluation for vision models (pretraining and post-pruning fine-tuning)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from sglp.core import validation
from sglp.core.device import is_main, model_device, model_input, rank, shard, world_size
from sglp.core.errors import CheckpointError, InvalidArgument
from sglp.core.modes import channels_last, eval_mode
from sglp.data.batches import ImageSplits

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
SCHEDULES = ("cosine", "multistep", "constant")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (call before anything draws: model construction included)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class SGDConfig:
    """Hyper-parameters of one SGD training run. `max_steps_per_epoch` caps an epoch (quick runs)."""

    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # "cosine" | "multistep" | "constant"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions of training
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    max_steps_per_epoch: int | None = None
    channels_last: bool = True
    amp: str | None = None  # mixed precision: "bf16" | "fp16" (fp16 with loss scaling, CUDA only) | None

    def __post_init__(self) -> None:
        validation.integer("epochs", self.epochs, minimum=0)
        validation.integer("batch_size", self.batch_size)
        validation.number("lr", self.lr, strict=True)
        validation.number("momentum", self.momentum, maximum=1.0)
        validation.number("weight_decay", self.weight_decay)
        validation.one_of("schedule", self.schedule, SCHEDULES)
        validation.number("warmup_epochs", self.warmup_epochs)
        validation.number("label_smoothing", self.label_smoothing, maximum=1.0)
        validation.integer("max_steps_per_epoch", self.max_steps_per_epoch, allow_none=True)
        validation.one_of("amp", self.amp, [*AMP_DTYPES, None])
        if self.schedule == "multistep":
            for m in self.milestones:
                validation.number("milestones entry", m, maximum=1.0)

    # Messages name bare fields (`lr=-1 ...`): run.py prefixes the config node that built this (finetune,
    # pretrain, strategy.retrain).

    def lr_at(self, step: int, total: int) -> float:
        """Learning rate at optimiser step `step` of `total` (linear warm-up, then the schedule)."""
        warm = int(self.warmup_epochs / max(self.epochs, 1) * total)
        if step < warm:
            return self.lr * (step + 1) / warm
        t = (step - warm) / max(total - warm, 1)
        if self.schedule == "cosine":
            return 0.5 * self.lr * (1 + math.cos(math.pi * t))
        if self.schedule == "multistep":
            return self.lr * self.gamma ** sum(t >= m for m in self.milestones)
        if self.schedule == "constant":
            return self.lr
        raise ValueError(f"unknown schedule {self.schedule!r}: use cosine, multistep or constant")


def to_memory_format(model: nn.Module, channels_last: bool) -> nn.Module:
    return model.to(memory_format=torch.channels_last) if channels_last else model


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, desc: str = "eval", progress: bool = True) -> dict[str, float]:
    """Top-1 accuracy (%) and mean cross-entropy of `model` over `batches` (eval mode); NaN without batches."""
    correct = total = 0
    loss_sum = 0.0
    with eval_mode(model):
        for x, y in tqdm(batches, desc=desc, leave=False, disable=not progress):
            logits = model(model_input(x, model))
            y = y.to(logits.device)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            total += len(y)
    if not total:  # no batch at all: say so rather than report 0 %
        return {"acc": float("nan"), "loss": float("nan")}
    return {"acc": 100.0 * correct / total, "loss": loss_sum / total}


def _save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_training_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model, optimiser and the torch RNG from a state file written by a training loop; returns the
    state (its step/epoch counters and history). A file that cannot be read is a clear error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot resume from {path}: {e}. Delete it to start over.") from e
    torch.set_rng_state(state["torch_rng"])
    return state


def train(
    model: nn.Module,
    data: ImageSplits,
    config: SGDConfig,
    seed: int = 0,
    state_path: str | Path | None = None,
    resume: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    desc: str = "train",
    progress: bool = True,
) -> list[dict]:
    """Train `model` in place with SGD on its current device; returns one dict of metrics per epoch.

    With `state_path`, the full training state (weights, optimiser, epoch) is written
    atomically after every epoch; `resume=True` continues from it. The data order depends
    only on (seed, epoch), so a resumed run ends with the same weights as an uninterrupted one.
    Under torchrun (a process group of N ranks) the model is wrapped in DistributedDataParallel and each
    rank trains on its slice of every global batch of `config.batch_size`; only rank 0 writes the state
    and calls `on_epoch`. `config.amp` runs forward and loss under autocast (bf16, or fp16 with a scaler).
    """
    if config.amp is not None and config.amp not in AMP_DTYPES:
        raise InvalidArgument(f"amp={config.amp!r}: choose bf16, fp16 or null")
    torch.manual_seed(seed)
    to_memory_format(model, config.channels_last)
    device = model_device(model)
    world, r = world_size(), rank()
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    use_scaler = config.amp == "fp16" and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
    )
    steps_per_epoch = len(data.train_batches(config.batch_size, max_batches=config.max_steps_per_epoch))
    total = steps_per_epoch * config.epochs
    history: list[dict] = []
    start_epoch = 0
    state_path = Path(state_path) if state_path else None
    if resume and state_path and state_path.exists():
        state = load_training_state(state_path, model, opt)
        start_epoch, history = state["epoch"] + 1, state["history"]
    for epoch in range(start_epoch, config.epochs):
        model.train()
        batches = data.train_batches(config.batch_size, seed=seed, epoch=epoch, max_batches=config.max_steps_per_epoch)
        t0, seen, correct, loss_sum = time.perf_counter(), 0, 0, 0.0
        bar = tqdm(batches, desc=f"{desc} {epoch + 1}/{config.epochs}", leave=False, disable=not progress)
        for i, (x, y) in enumerate(bar):
            lr = config.lr_at(epoch * steps_per_epoch + i, total)
            for g in opt.param_groups:
                g["lr"] = lr
            if world > 1:
                x, y = shard(x, r, world), shard(y, r, world)
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if config.channels_last:
                x = channels_last(x)
            with torch.autocast(
                device.type, dtype=AMP_DTYPES.get(config.amp or "bf16"), enabled=config.amp is not None
            ):
                logits = net(x)
                loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            seen += len(y)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            if i % 10 == 0:
                bar.set_postfix(
                    loss=f"{loss_sum / seen:.3f}",
                    acc=f"{100 * correct / seen:.1f}",
                    img_s=f"{seen / (time.perf_counter() - t0):.0f}",
                    lr=f"{lr:.4f}",
                )
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "train_acc": 100 * correct / max(seen, 1),
            "seconds": time.perf_counter() - t0,
            "img_per_s": seen / (time.perf_counter() - t0),
        }
        if on_epoch and is_main():
            on_epoch(record)
        history.append(record)
        if state_path and is_main():
            state_path.parent.mkdir(parents=True, exist_ok=True)
            _save_atomic(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "epoch": epoch,
                    "history": history,
                    "torch_rng": torch.get_rng_state(),
                    "config": asdict(config),
                },
                state_path,
            )
    return history
