"""Accuracy-gain criteria from per-unit proxy classifiers on pooled unit outputs.

- `Imprinting` (LayerPrune, Elkerdawy et al., Eqs. 5-7): each unit's output O_i is adaptive-average-pooled
  to d_i x d_i with d_i = round(sqrt(N / n_i)) (n_i channels, N the embedding length, Eq. 5), flattened,
  and classified by imprinted weights: P_i[:, c] = the mean embedding of class c (Eq. 6), prediction
  argmax_c P_i[:, c]^T E (Eq. 7).
- `LinearProbe` (Chen & Zhao, "Shallowing deep networks: layer-wise pruning based on feature
  representations"): a softmax-regression probe trained on the same pooled features.

A unit's importance is the gain of its probe's accuracy over the previous one's, the "previous" of unit 0
being the input of unit 0 (the stem's output); units that do not improve on their predecessor rank
lowest. Probes are fitted on the first half of the calibration batches and scored on the second half.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sglp.core.activations import unit_output_hooks
from sglp.core.device import model_device
from sglp.core.errors import InvalidArgument
from sglp.core.modes import channels_last, eval_mode
from sglp.core.units import prunable_units
from sglp.methods.criteria.base import Batches, UnitCriterion


def pooled_embedding(t: torch.Tensor, length: int) -> torch.Tensor:
    """Eq. 5: (B, C, H, W) -> (B, C * d * d) with d = round(sqrt(length / C)) (at least 1); token
    sequences (B, T, D) are averaged over tokens; (B, D) is returned as is."""
    t = t.detach().float()
    if t.dim() == 4:
        d = max(1, round(math.sqrt(length / t.shape[1])))
        return F.adaptive_avg_pool2d(t, d).flatten(1)
    if t.dim() == 3:
        return t.mean(dim=1)
    return t.flatten(1)


@torch.no_grad()
def unit_embeddings(model: nn.Module, batches: Batches, length: int) -> list[torch.Tensor]:
    """[E_input, E_0, ..., E_{L-1}]: pooled embeddings of unit 0's input and of every unit's output,
    each (examples, features), BatchNorm in eval mode."""
    units = prunable_units(model)
    per_batch: list[list[torch.Tensor]] = [[] for _ in range(len(units) + 1)]
    first_input = units[0][1].register_forward_pre_hook(
        lambda _m, args: per_batch[0].append(pooled_embedding(args[0], length))
    )
    try:
        with (
            eval_mode(model),
            unit_output_hooks(model, lambda i, out: per_batch[i + 1].append(pooled_embedding(out, length))),
        ):
            for x, _ in batches:
                model(x)
    finally:
        first_input.remove()
    return [torch.cat(e) for e in per_batch]


def imprint_accuracy(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, num_classes: int
) -> float:
    """Eqs. 6-7: class-mean weights from (train_x, train_y); accuracy (%) of argmax_c P[:, c]^T E on the test set.
    A class absent from the training part gets no weights (never predicted)."""
    p = torch.zeros(train_x.shape[1], num_classes, dtype=torch.float64)
    counts = torch.bincount(train_y, minlength=num_classes)
    p.index_add_(1, train_y, train_x.double().T)
    p = p / counts.clamp_min(1)
    logits = test_x.double() @ p
    logits[:, counts == 0] = -math.inf
    return 100.0 * (logits.argmax(1) == test_y).double().mean().item()


def linear_probe_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    steps: int = 200,
    lr: float = 0.05,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> float:
    """Softmax regression on standardised features, full-batch Adam for `steps` steps; test accuracy (%)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    a, b = (train_x - mean) / std, (test_x - mean) / std
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(a.shape[1], num_classes, generator=g) * 0.01).requires_grad_()
    bias = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.Adam([w, bias], lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(a @ w + bias, train_y).backward()
            opt.step()
    with torch.no_grad():
        return 100.0 * ((b @ w + bias).argmax(1) == test_y).double().mean().item()


class _ProbeGain(UnitCriterion):
    """Probes fitted on `fit_per_class` training examples of every class and scored on the calibration batches
    (LayerPrune imprints from the training data); `fit_per_class=None`: fitted on the first half of the calibration
    batches and scored on the rest."""

    def __init__(
        self, num_batches: int = 4, batch_size: int = 128, embedding_length: int = 1024, fit_per_class: int | None = 50
    ) -> None:
        super().__init__(num_batches, batch_size)
        if fit_per_class is None and num_batches < 2:
            raise InvalidArgument(f"scorer.num_batches={num_batches}: probes need >= 2 (half fit, half scoring)")
        if fit_per_class is not None and (fit_per_class < 1 or num_batches < 1):
            raise InvalidArgument(
                f"scorer.fit_per_class={fit_per_class} / num_batches={num_batches} must be >= 1 (or fit_per_class=null)"
            )
        self.embedding_length, self.fit_per_class = embedding_length, fit_per_class
        self.fit_batches: Batches | None = None
        self.probe_accuracy: list[float] = []  # accuracy of unit 0's input, then of every unit's output

    def prepare(self, calibration, model: nn.Module | None = None) -> None:
        if self.fit_per_class is not None:
            per_class = getattr(calibration, "train_per_class", None)
            if per_class is None:
                raise InvalidArgument(
                    f"{type(self).__name__}: this data source has no training split to fit probes on: "
                    "set scorer.fit_per_class=null (fit on half of the calibration batches)"
                )
            device = model_device(model) if model is not None else torch.device("cpu")
            fit = per_class(self.fit_per_class, self.batch_size)
            self.fit_batches = [(channels_last(x.to(device)), y.to(device)) for x, y in fit]
        super().prepare(calibration, model)

    def accuracy(self, train_x, train_y, test_x, test_y, num_classes: int) -> float:
        raise NotImplementedError

    def unit_importance(self, model: nn.Module, batches: Batches) -> torch.Tensor:
        if self.fit_batches is not None:
            fit, score = self.fit_batches, batches
        else:
            half = len(batches) // 2
            fit, score = batches[:half], batches[half:]
        ys_fit, ys_score = torch.cat([y for _, y in fit]), torch.cat([y for _, y in score])
        num_classes = int(max(ys_fit.max(), ys_score.max())) + 1
        emb_fit = unit_embeddings(model, fit, self.embedding_length)
        emb_score = unit_embeddings(model, score, self.embedding_length)
        self.probe_accuracy = [self.accuracy(a, ys_fit, b, ys_score, num_classes) for a, b in zip(emb_fit, emb_score)]
        acc = torch.tensor(self.probe_accuracy, dtype=torch.float64)
        return acc[1:] - acc[:-1]


class Imprinting(_ProbeGain):
    """LayerPrune's imprinting criterion: accuracy gain of nearest-class-mean probes (Eqs. 5-7)."""

    def accuracy(self, train_x, train_y, test_x, test_y, num_classes: int) -> float:
        return imprint_accuracy(train_x, train_y, test_x, test_y, num_classes)


class LinearProbe(_ProbeGain):
    """Chen et al.'s linear probes: accuracy gain of a softmax-regression probe per unit."""

    def __init__(
        self,
        num_batches: int = 4,
        batch_size: int = 128,
        embedding_length: int = 1024,
        steps: int = 200,
        lr: float = 0.05,
        weight_decay: float = 1e-4,
        seed: int = 0,
        fit_per_class: int | None = 50,
    ) -> None:
        super().__init__(num_batches, batch_size, embedding_length, fit_per_class)
        self.steps, self.lr, self.weight_decay, self.seed = steps, lr, weight_decay, seed

    def accuracy(self, train_x, train_y, test_x, test_y, num_classes: int) -> float:
        return linear_probe_accuracy(
            train_x, train_y, test_x, test_y, num_classes, self.steps, self.lr, self.weight_decay, self.seed
        )
