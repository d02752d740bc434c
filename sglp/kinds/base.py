"""The contract between the one pruning job (sglp.experiment.pipeline.run_pruning) and a kind of model.

A `Task` knows how to load its model, feed calibration data, measure a model (quality and cost), fine-tune it after
pruning, pretrain it from scratch and save it. Two kinds exist: image/signal classifiers
(sglp.kinds.classification.task: SGD, accuracy, MACs, latency) and decoder LLMs (sglp.kinds.causal_lm.task: LoRA,
perplexity, lm-eval, tokens/s). A model's config picks its kind (`configs/kind/`), so `python run.py model=<name>`
needs no other override.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from sglp.core import validation
from sglp.core.calibration import SplitCalibration
from sglp.core.errors import InvalidArgument


@dataclass
class NoFinetuning:
    """`finetune=none`: the pruned model is measured as it is (for every kind of model)."""


class Task(ABC):
    """One kind of model behind one interface. Construction validates every option (before any data is loaded);
    data are built on first use.

    `data_factory()` builds the splits (`calib_batches(batch_size, num_batches, seed)`, `test_batches`, ...).
    """

    kind: str = ""  # the configs/kind/ name (scorers list the kinds they can score)
    # Whether a prune job removes the units from the loaded model itself once the dense model is measured (no second
    # copy of the weights through the prune stage: the LLM kind); classifiers are pruned on a copy.
    surgery_in_place: bool = False
    recipes: tuple[type, ...] = ()  # fine-tuning configs this kind accepts (NoFinetuning always)

    def __init__(self, data_factory: Callable[..., Any], finetune: Any, progress: bool = True) -> None:
        if not isinstance(finetune, (*self.recipes, NoFinetuning)):
            names = ", ".join(r.__name__ for r in self.recipes)
            raise InvalidArgument(
                f"finetune is a {type(finetune).__name__}, which {type(self).__name__} cannot run: choose a "
                f"finetune config of type {names}, or finetune=none"
            )
        self.data_factory, self.finetune_config, self.progress = data_factory, finetune, progress
        self._data = None

    @staticmethod
    def check_measurement(eval_batch_size: int, eval_max_batches: int | None, latency_batch_sizes, min_run_time: float):
        """The options every kind measures with: test batches and the latency / throughput timing."""
        validation.integer("eval_batch_size", eval_batch_size)
        validation.integer("eval_max_batches", eval_max_batches, allow_none=True)
        validation.batch_sizes("latency.batch_sizes", latency_batch_sizes)
        validation.number("latency.min_run_time", min_run_time, strict=True)

    @property
    def data(self):
        """The dataset splits, built on first use."""
        if self._data is None:
            self._data = self.build_data()
        return self._data

    def build_data(self):
        return self.data_factory()

    @property
    def finetunes(self) -> bool:
        return not isinstance(self.finetune_config, NoFinetuning)

    def calibration(self, seed: int) -> SplitCalibration:
        """The scorers' calibration source: held-out calibration batches (never the test set)."""
        return SplitCalibration(self.data, seed=seed)

    def cka_batches(self, batch_size: int, num_batches: int, seed: int) -> list:
        """The batches the similarity stage reads (the held-out calibration split)."""
        return list(self.data.calib_batches(batch_size, num_batches, seed=seed))

    @property
    @abstractmethod
    def weights_dir(self) -> Path | None:
        """Where the trained weights live (pretraining writes its log and config there)."""

    @abstractmethod
    def weights_missing(self) -> bool:
        """Whether the trained weights this task loads are absent (then `pretrain` can make them)."""

    @abstractmethod
    def load_model(self) -> nn.Module:
        """The trained model, on its device, in eval mode."""

    @abstractmethod
    def prepare(self, run_dir: Path, seed: int) -> None:
        """Anything a prune run needs before the first measurement (e.g. a local evaluation task's items)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, stage: str) -> dict[str, float]:
        """Quality of `model` as row entries; `stage` is `dense`, `pruned_before_ft` or `pruned`."""

    @abstractmethod
    def finetune(self, model: nn.Module, seed: int, logger, steps: int | None = None) -> tuple[nn.Module, dict]:
        """Recovery after pruning: (the fine-tuned model, row entries describing what was run). `steps`: the
        recipe with this budget of optimizer steps instead of its own (budget curves)."""

    def check_retrain(self, recipe: Any) -> None:
        """Fail fast when `retrain` cannot train with `recipe` (checked before the first pruning step). Kinds that
        cannot retrain at all say so."""
        raise InvalidArgument(f"{type(self).__name__} cannot retrain between pruning steps: set strategy.retrain=null")

    def retrain(self, model: nn.Module, recipe: Any, seed: int) -> None:
        """Train `model` in place with `recipe` on this kind's training data: what a strategy that trains between
        its steps (layer fusion's iterative variant) is handed. A kind that retrains overrides both methods."""
        Task.check_retrain(self, recipe)

    @abstractmethod
    def measure_cost(self, model: nn.Module) -> dict[str, Any]:
        """Cost of one model (parameters, MACs, latency or throughput); JSON-serialisable (the dense cache)."""

    @abstractmethod
    def compare_cost(self, dense: dict[str, Any], pruned: dict[str, Any]) -> dict[str, Any]:
        """Row entries from two `measure_cost` results: both values and the reductions."""

    def cost(self, dense: nn.Module, pruned: nn.Module) -> dict[str, Any]:
        """Cost of both models as row entries."""
        return self.compare_cost(self.measure_cost(dense), self.measure_cost(pruned))

    def weights_digest(self) -> str | None:
        """A digest of the trained weights `load_model` reads (keys the dense cache); None: not cacheable."""
        return None

    @abstractmethod
    def save(self, model: nn.Module, run_dir: Path, **meta: Any) -> Path:
        """Write the pruned model into `run_dir`; returns its path."""

    @abstractmethod
    def pretrain(
        self, recipe: Any, seed: int, resume: bool, overwrite: bool, logger, config_yaml: str, command: str
    ) -> dict[str, Any]:
        """Train the model from scratch and save it where `load_model` finds it; returns its summary."""

    def evaluate_saved(self, path: str | Path) -> dict[str, Any]:
        """The test metrics of a pruned model saved by a prune run."""
        raise InvalidArgument(f"mode=evaluate is not available for {type(self).__name__}: {self.evaluate_hint}")

    evaluate_hint = "evaluate the saved model with a prune run's measurements"
