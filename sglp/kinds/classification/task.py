"""Image and signal classifiers as a pruning task: SGD fine-tuning, top-1 accuracy, MACs, parameters, latency."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sglp.core.checkpoint import file_digest, load_pruned, load_weights, save_checkpoint
from sglp.core.errors import CheckpointError, InvalidArgument
from sglp.core.metrics import count_flops, count_parameters, measure_latency, reduction_pct
from sglp.kinds.base import NoFinetuning, Task
from sglp.kinds.classification.training import SGDConfig, evaluate, to_memory_format, train

log = logging.getLogger(__name__)


class ClassificationTask(Task):
    """A classifier `net` whose trained weights sit at `checkpoint` (None: the weights it was built with, e.g.
    torchvision's). Accuracy in %, cost as parameters, FLOPs/MACs of one example and latency per batch size."""

    kind = "classification"
    recipes = (SGDConfig,)

    def __init__(
        self,
        net: nn.Module,
        checkpoint: str | None,
        data: Callable[[], Any],
        finetune: SGDConfig | NoFinetuning,
        device: torch.device | str = "cpu",
        eval_batch_size: int = 500,
        eval_max_batches: int | None = None,
        latency_batch_sizes: Sequence[int] = (1, 8, 64),
        latency_threads: int | None = None,
        latency_min_run_time: float = 1.0,
        progress: bool = True,
    ) -> None:
        super().__init__(data, finetune, progress)
        self.check_measurement(eval_batch_size, eval_max_batches, latency_batch_sizes, latency_min_run_time)
        self.net, self.checkpoint, self.device = net, checkpoint, torch.device(device)
        self.eval_batch_size, self.eval_max_batches = eval_batch_size, eval_max_batches
        self.latency_batch_sizes = list(latency_batch_sizes)
        self.latency_threads, self.latency_min_run_time = latency_threads, latency_min_run_time

    @property
    def weights_dir(self) -> Path | None:
        return Path(self.checkpoint).parent if self.checkpoint else None

    def weights_missing(self) -> bool:
        return self.checkpoint is not None and not os.path.exists(self.checkpoint)

    def load_model(self) -> nn.Module:
        if self.checkpoint is not None:
            if not Path(self.checkpoint).is_file():
                raise CheckpointError(
                    f"no backbone checkpoint at {self.checkpoint}. Fix: train one with `python run.py mode=pretrain "
                    "model=<model> dataset=<dataset>`, run with `pretrain_if_missing=true`, or set `checkpoint=<path>`."
                )
            load_weights(self.net, self.checkpoint)
        return to_memory_format(self.net.to(self.device), True).eval()

    def prepare(self, run_dir: Path, seed: int) -> None:
        """Nothing to prepare: the test split is the evaluation."""

    def test_metrics(self, model: nn.Module, desc: str) -> dict[str, float]:
        """Top-1 accuracy (%) and mean loss on the test split (capped at eval_max_batches)."""
        batches = self.data.test_batches(self.eval_batch_size, self.eval_max_batches)
        return evaluate(model, batches, desc, self.progress)

    def evaluate(self, model: nn.Module, stage: str) -> dict[str, float]:
        key = {"dense": "dense_acc", "pruned_before_ft": "pruned_acc_before_ft", "pruned": "pruned_acc"}[stage]
        return {key: self.test_metrics(model, f"eval {stage}")["acc"]}

    def recipe(self, steps: int | None = None) -> SGDConfig | NoFinetuning:
        """The fine-tuning recipe; with `steps`, the same recipe stretched or cut to that many SGD steps (in as few
        epochs as the training split allows, the steps spread evenly over them; the schedule spans them all)."""
        ft = self.finetune_config
        if steps is None or not isinstance(ft, SGDConfig):
            return ft
        epochs = max(1, math.ceil(steps / len(self.data.train_batches(ft.batch_size))))
        return dataclasses.replace(ft, epochs=epochs, max_steps_per_epoch=math.ceil(steps / epochs))

    def finetune(self, model: nn.Module, seed: int, logger, steps: int | None = None) -> tuple[nn.Module, dict]:
        ft = self.recipe(steps)
        if isinstance(ft, SGDConfig) and ft.epochs > 0:
            train(model, self.data, ft, seed=seed, desc="finetune", progress=self.progress,
                  on_epoch=lambda r: logger.log({f"finetune/{k}": v for k, v in r.items()}))  # fmt: skip
            return model, {"finetune_epochs": ft.epochs, "finetune_max_steps_per_epoch": ft.max_steps_per_epoch}
        return model, {"finetune_epochs": 0, "finetune_max_steps_per_epoch": getattr(ft, "max_steps_per_epoch", None)}

    @property
    def finetunes(self) -> bool:
        return isinstance(self.finetune_config, SGDConfig) and self.finetune_config.epochs > 0

    def check_retrain(self, recipe: Any) -> None:
        if not isinstance(recipe, SGDConfig):
            raise InvalidArgument(
                f"strategy.retrain is a {type(recipe).__name__}: a classifier retrains with an SGDConfig "
                "({_target_: sglp.kinds.classification.training.SGDConfig, ...}) or null"
            )

    def retrain(self, model: nn.Module, recipe: SGDConfig, seed: int) -> None:
        self.check_retrain(recipe)
        train(model, self.data, recipe, seed=seed, desc="retrain", progress=self.progress)

    def measure_cost(self, model: nn.Module) -> dict[str, Any]:
        shape = self.data.input_shape
        out: dict[str, Any] = {"params": count_parameters(model), "flops": count_flops(model, shape)}
        out["macs"] = out["flops"] / 2
        for b in self.latency_batch_sizes:
            out[f"latency_ms_bs{b}"] = measure_latency(model, shape, b, self.latency_threads, self.latency_min_run_time)
        return out

    def compare_cost(self, dense: dict[str, Any], pruned: dict[str, Any]) -> dict[str, Any]:
        d, p = dense, pruned
        row: dict[str, Any] = {}
        for name in ("flops", "macs"):
            row.update({f"{name}_dense": d[name], f"{name}_pruned": p[name]})
        row.update({"flops_reduction_pct": reduction_pct(d["flops"], p["flops"]),
                    "macs_reduction_pct": reduction_pct(d["macs"], p["macs"]),
                    "params_dense": d["params"], "params_pruned": p["params"],
                    "params_reduction_pct": reduction_pct(d["params"], p["params"])})  # fmt: skip
        for b in self.latency_batch_sizes:
            ld, lp = d[f"latency_ms_bs{b}"], p[f"latency_ms_bs{b}"]
            row.update({f"latency_ms_dense_bs{b}": ld, f"latency_ms_pruned_bs{b}": lp,
                        f"latency_reduction_pct_bs{b}": reduction_pct(ld, lp)})  # fmt: skip
        return row

    def weights_digest(self) -> str | None:
        return file_digest([Path(self.checkpoint)]) if self.checkpoint and Path(self.checkpoint).is_file() else None

    def save(self, model: nn.Module, run_dir: Path, **meta: Any) -> Path:
        return save_checkpoint(Path(run_dir) / "pruned_model.pt", model, **meta)

    def evaluate_saved(self, path: str | Path) -> dict[str, Any]:
        if not path:
            raise InvalidArgument("mode=evaluate needs pruned_model=<run dir>/pruned_model.pt")
        pruned = load_pruned(self.net, path).to(self.device)
        result = self.test_metrics(pruned, "test")
        result["params"] = count_parameters(pruned)
        print(f"{path}: test accuracy {result['acc']:.2f} %, loss {result['loss']:.4f}, "
              f"{result['params']:,} parameters")  # fmt: skip
        return result

    def pretrain(
        self, recipe: SGDConfig, seed: int, resume: bool, overwrite: bool, logger, config_yaml: str, command: str
    ) -> dict[str, Any]:
        from sglp.kinds.classification.pretrain import pretrain_backbone

        if self.checkpoint is None:
            raise InvalidArgument("pretraining writes its weights to `checkpoint`: set checkpoint=<path>/model.pt")
        meta = pretrain_backbone(self.net.to(self.device), self.data, recipe, self.checkpoint, seed=seed,
                                 resume=resume, overwrite=overwrite, logger=logger, config_yaml=config_yaml,
                                 command=command, progress=self.progress)  # fmt: skip
        return meta
