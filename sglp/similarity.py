"""Linear CKA (Kornblith et al., 2019) between layer representations, all pairs at once.

Notation: X is (n, d) with one example per row (trailing dims are flattened); K = X X^T is its
(n, n) linear Gram matrix. Both HSIC estimators are inner products of *transformed* Grams:

- biased (Kornblith; SGLP Eqs. 3-10):  HSIC_0(K, L) = <H K H, H L H> / (n - 1)^2,  H = I - 11^T / n
- unbiased (Song et al. 2012, used minibatch-wise by Nguyen et al. 2021):
  HSIC_1(K, L) = <U(K), U(L)> / (n (n - 3)),  U = U-centring (Szekely & Rizzo 2014; zero diagonal)

CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)). So for L layers we transform L Grams once,
stack them as rows of V (L, n^2) and get every pair from one product V V^T. Over several
calibration batches the HSIC terms are summed before the ratio (Nguyen et al.'s minibatch CKA).

Why `unbiased` is the default: with features much wider than the batch (d >> n; a ResNet-56
block output on 28x28 inputs has d = 3136..12544 against n = 128) the biased estimator is
pulled towards 1 even for independent random features; HSIC_1 is not. Features are centred
and Grams formed in float64 (a large activation mean otherwise costs float32 precision).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from sglp.activations import unit_output_hooks
from sglp.device import model_input
from sglp.errors import InvalidArgument
from sglp.modes import eval_mode

ESTIMATORS = ("biased", "unbiased")
KERNELS = ("linear", "rbf")


def gram_linear(x: torch.Tensor) -> torch.Tensor:
    """Linear Gram matrix (n, n) in float64 of x (n, ...), features centred first."""
    x = x.detach().reshape(x.shape[0], -1).to(torch.float64)
    x = x - x.mean(0, keepdim=True)
    return x @ x.T


def gram_rbf(x: torch.Tensor, sigma_frac: float = 0.5) -> torch.Tensor:
    """RBF Gram (n, n) in float64: exp(-||xi - xj||^2 / (2 sigma^2)), sigma = sigma_frac x the median
    pairwise distance (as in Kornblith et al.'s CKA demo: sigma^2 = sigma_frac^2 x median squared distance)."""
    k = gram_linear(x)  # centred features: distances are unchanged, precision is better
    norms = k.diagonal()
    sq = (norms[:, None] + norms[None, :] - 2 * k).clamp_min(0.0)
    # over all n^2 entries, diagonal zeros included, averaging the two middle values (numpy's median)
    sq_median = torch.quantile(sq.reshape(-1), 0.5)
    return torch.exp(-sq / (2 * sigma_frac**2 * sq_median.clamp_min(1e-300)))


def centre_gram(k: torch.Tensor) -> torch.Tensor:
    """H K H: subtract row and column means, add back the grand mean."""
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def u_centre_gram(k: torch.Tensor) -> torch.Tensor:
    """U-centred Gram (zero diagonal), so that <U(K), U(L)> / (n (n - 3)) is the unbiased HSIC."""
    n = k.shape[0]
    if n < 4:
        raise InvalidArgument(f"the unbiased HSIC needs at least 4 examples per batch, got {n}")
    k = k.clone()
    k.fill_diagonal_(0.0)
    row = k.sum(1, keepdim=True)
    u = k - row / (n - 2) - row.T / (n - 2) + k.sum() / ((n - 1) * (n - 2))
    u.fill_diagonal_(0.0)
    return u


def check_options(estimator: str, kernel: str) -> None:
    if estimator not in ESTIMATORS:
        raise InvalidArgument(f"unknown CKA estimator {estimator!r}: choose one of {ESTIMATORS}")
    if kernel not in KERNELS:
        raise InvalidArgument(f"unknown CKA kernel {kernel!r}: choose one of {KERNELS}")


def transformed_gram(
    x: torch.Tensor, estimator: str = "unbiased", kernel: str = "linear", sigma_frac: float = 0.5
) -> tuple[torch.Tensor, float]:
    """(flattened transformed Gram of x, normaliser) such that HSIC(x, y) = <T(x), T(y)> / normaliser."""
    check_options(estimator, kernel)
    n = x.shape[0]
    k = gram_linear(x) if kernel == "linear" else gram_rbf(x, sigma_frac)
    if estimator == "biased":
        return centre_gram(k).reshape(-1), float((n - 1) ** 2)
    return u_centre_gram(k).reshape(-1), float(n * (n - 3))


def _cka_from_hsic(hsic: torch.Tensor) -> torch.Tensor:
    diag = hsic.diagonal().clamp_min(0.0).sqrt()
    denom = diag[:, None] * diag[None, :]
    return torch.where(denom > 0, hsic / denom.clamp_min(1e-300), torch.zeros_like(hsic))


class CKAAccumulator:
    """Streams calibration batches into the L x L HSIC sums; memory O(L^2 + L n^2), not O(batches).

    Per batch: `add(i, output)` for each layer i (any order), then `end_batch()`.
    """

    def __init__(
        self, num_layers: int, estimator: str = "unbiased", kernel: str = "linear", sigma_frac: float = 0.5
    ) -> None:
        check_options(estimator, kernel)
        self.num_layers, self.estimator, self.kernel, self.sigma_frac = num_layers, estimator, kernel, sigma_frac
        self.hsic = torch.zeros(num_layers, num_layers, dtype=torch.float64)
        self._rows: list[torch.Tensor | None] = [None] * num_layers
        self._norm: float | None = None
        self.batches = 0

    def add(self, layer: int, output: torch.Tensor) -> None:
        self._rows[layer], self._norm = transformed_gram(output, self.estimator, self.kernel, self.sigma_frac)

    def end_batch(self) -> None:
        missing = [i for i, r in enumerate(self._rows) if r is None]
        if missing:
            raise RuntimeError(f"layers {missing} produced no output in this batch")
        v = torch.stack(self._rows)  # type: ignore[arg-type]
        self.hsic += ((v @ v.T) / self._norm).cpu()
        self._rows = [None] * self.num_layers
        self.batches += 1

    def matrix(self) -> torch.Tensor:
        """The (L, L) CKA matrix from all batches so far (float64)."""
        if not self.batches:
            raise RuntimeError("no batch was added")
        return _cka_from_hsic(self.hsic)


def cka_matrix(
    features: Sequence[torch.Tensor], estimator: str = "unbiased", kernel: str = "linear", sigma_frac: float = 0.5
) -> torch.Tensor:
    """(L, L) CKA matrix of L per-layer activations, each (n, ...) over the same n examples."""
    acc = CKAAccumulator(len(features), estimator, kernel, sigma_frac)
    for i, f in enumerate(features):
        acc.add(i, f)
    acc.end_batch()
    return acc.matrix()


def linear_cka(x: torch.Tensor, y: torch.Tensor, estimator: str = "unbiased") -> float:
    """Linear CKA of x (n, ...) and y (n, ...): 1 for identical representations, invariant to
    orthogonal transforms and isotropic scaling of either."""
    if x.shape[0] != y.shape[0]:
        raise InvalidArgument(f"x and y need the same number of examples (rows), got {x.shape[0]} and {y.shape[0]}")
    return float(cka_matrix([x, y], estimator)[0, 1])


class CKA:
    """CKA (linear by default) between the outputs of a model's prunable units on calibration batches."""

    def __init__(
        self, estimator: str = "unbiased", kernel: str = "linear", sigma_frac: float = 0.5, token_rows: bool = False
    ) -> None:
        check_options(estimator, kernel)  # fail at construction, before any data is read
        self.estimator, self.kernel, self.sigma_frac = estimator, kernel, sigma_frac
        self.token_rows = token_rows  # (B, T, D) outputs: one row per token (LLMs), not per sequence

    @torch.no_grad()
    def __call__(self, model: nn.Module, batches: Iterable, progress: bool = True) -> torch.Tensor:
        """(L, L) CKA matrix of unit outputs; unit i's output is what prunable unit i returns."""
        acc: CKAAccumulator | None = None

        def add(i: int, out: torch.Tensor) -> None:
            acc.add(i, out.reshape(-1, out.shape[-1]) if self.token_rows else out)  # type: ignore[union-attr]

        with eval_mode(model), unit_output_hooks(model, add) as num_units:
            acc = CKAAccumulator(num_units, self.estimator, self.kernel, self.sigma_frac)
            for x, _ in tqdm(batches, desc="CKA", leave=False, disable=not progress):
                model(model_input(x, model))
                acc.end_batch()
        if acc is None or not acc.batches:
            raise InvalidArgument("no calibration batch: the calibration split is smaller than one batch")
        return acc.matrix()
