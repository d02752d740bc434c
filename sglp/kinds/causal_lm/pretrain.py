"""Pretraining a small causal LM on a local corpus (the offline default model of the LLM track).

AdamW with linear warm-up and cosine decay; every `eval_every` steps the calibration-split perplexity is logged and
the full training state is written atomically, so a killed run resumes where it stopped. At the end the model and
its tokenizer are saved with `save_pretrained` (safetensors + config), with the log, the test perplexity and, for
scale, the test perplexity of a unigram model fitted on the training tokens.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sglp.core import validation
from sglp.core.device import model_device
from sglp.core.errors import InvalidArgument
from sglp.kinds.causal_lm.perplexity import perplexity
from sglp.kinds.classification.training import load_training_state


@dataclass
class LMTrainConfig:
    steps: int = 3000
    batch_size: int = 16
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_batches: int = 16

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "eval_every", "eval_batches"):
            validation.integer(f"{key}", getattr(self, key))
        validation.integer("warmup_steps", self.warmup_steps, minimum=0)
        validation.number("lr", self.lr, strict=True)
        validation.number("min_lr", self.min_lr, maximum=self.lr)
        validation.number("weight_decay", self.weight_decay)
        validation.number("beta2", self.beta2, maximum=1.0)
        validation.number("grad_clip", self.grad_clip, strict=True)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        t = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * min(t, 1.0)))


def unigram_perplexity(train: torch.Tensor, test: torch.Tensor, vocab_size: int) -> float:
    """Test perplexity of add-one-smoothed unigram frequencies from the training tokens (the no-context baseline)."""
    counts = torch.bincount(train.reshape(-1), minlength=vocab_size).double() + 1.0
    logp = (counts / counts.sum()).log()
    return math.exp(-logp[test.reshape(-1)].mean().item())


def pretrain_causal_lm(
    model, tokenizer, data, config: LMTrainConfig, out_dir: str | Path, seed: int = 0, resume: bool = True,
    overwrite: bool = False, command: str | None = None, progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Train `model` on `data.train_batches` (TextSplits) and save everything to `out_dir` (see module docs)."""
    out_dir = Path(out_dir)
    if (out_dir / "model.safetensors").exists() and not overwrite:
        raise InvalidArgument(f"{out_dir} already holds a model: pass overwrite=true to re-create it")
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path, log_path = out_dir / "train_state.pt", out_dir / "train_log.csv"
    torch.manual_seed(seed)
    device = model_device(model)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, betas=(0.9, config.beta2),
    )  # fmt: skip
    step, history, seconds = 0, [], 0.0
    if resume and state_path.exists():
        state = load_training_state(state_path, model, opt)
        step, history, seconds = state["step"], state["history"], state["seconds"]
    per_epoch = len(data.train_batches(config.batch_size))
    bar = tqdm(total=config.steps, initial=step, desc="pretrain LM", leave=False, disable=not progress)
    t0, loss_sum, n = time.perf_counter(), 0.0, 0
    model.train()
    while step < config.steps:
        epoch, offset = divmod(step, per_epoch)
        for i, (ids, _) in enumerate(data.train_batches(config.batch_size, seed=seed, epoch=epoch)):
            if i < offset:
                continue  # resumed mid-epoch: skip the batches already seen
            for g in opt.param_groups:
                g["lr"] = config.lr_at(step)
            ids = ids.to(device)
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            step, loss_sum, n = step + 1, loss_sum + loss.item(), n + 1
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss_sum / n:.3f}", lr=f"{config.lr_at(step):.2e}")
            if step % config.eval_every == 0 or step == config.steps:
                seconds += time.perf_counter() - t0
                calib_ppl = perplexity(model, data.calib_batches(config.batch_size, config.eval_batches))
                model.train()
                history.append(
                    {"step": step, "train_loss": loss_sum / n, "train_ppl": math.exp(loss_sum / n),
                     "calib_ppl": calib_ppl, "seconds": seconds}
                )  # fmt: skip
                with open(log_path, "w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(history[0]))
                    w.writeheader()
                    w.writerows(history)
                tmp = state_path.with_suffix(".tmp")
                torch.save(
                    {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "history": history,
                     "seconds": seconds, "torch_rng": torch.get_rng_state(), "config": asdict(config)},
                    tmp,
                )  # fmt: skip
                os.replace(tmp, state_path)
                t0, loss_sum, n = time.perf_counter(), 0.0, 0
            if step >= config.steps:
                break
    bar.close()
    model.eval()
    test_ppl = perplexity(model, data.test_batches(config.batch_size))
    meta = {
        "test_perplexity": test_ppl,
        "unigram_test_perplexity": unigram_perplexity(data.train_x, data.test_x, len(tokenizer)),
        "steps": config.steps,
        "train_seconds": seconds,
        "tokens_seen": config.steps * config.batch_size * data.seq_len,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seed": seed,
        "command": command,
    }
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    state_path.unlink(missing_ok=True)
    return meta
