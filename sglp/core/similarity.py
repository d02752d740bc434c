"""Linear CKA (Kornblith et al., 2019) between layer representations, all pairs at once.

Notation: X is (n, d) with one example per row (trailing dims are flattened); K = X X^T is its
(n, n) linear Gram matrix. Both HSIC estimators are inner products of *transformed* Grams:

- biased (Kornblith; SGLP Eqs. 3-10):  HSIC_0(K, L) = <H K H, H L H> / (n - 1)^2,  H = I - 11^T / n
- unbiased (Song et al. 2012, used minibatch-wise by Nguyen et al. 2021):
  HSIC_1(K, L) = <U(K), U(L)> / (n (n - 3)),  U = U-centring (Szekely & Rizzo 2014; zero diagonal)

CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)). So for L layers we transform L Grams once and
take every pair's inner product (no stacked (L, n^2) copy). Over several calibration batches the HSIC
terms are summed before the ratio (Nguyen et al.'s minibatch CKA).

Two exact forms of the linear-kernel HSIC, chosen per batch (`form="auto"`):

- Gram form: L transformed (n, n) Grams, memory O(L n^2);
- feature form (linear kernel only): keep each layer's features X_i (n, d_i) in the model's dtype; centre
  exactly in float64 through X_c^T Y_c = X^T Y - n mu_x mu_y^T (row chunks, no centred copy), and use
  <HKH, HLH> = ||X^T Y||_F^2 and, for the unbiased estimator (a_k = ||x_k||^2, b_k = ||y_k||^2, centred rows),
  HSIC_1 = (||X^T Y||_F^2 - (1 + 2/(n-2)) a.b + (sum a)(sum b) / ((n-1)(n-2))) / (n (n-3)),
  memory O(n sum_i d_i + d_i d_j): what token rows of LLMs need (n = 16,384 tokens, d = 4,096, 32 layers: 4 GB
  of bf16 outputs, 17 GB had they been held in float64, against the Grams' 64 GB). `auto` takes the feature form
  for a batch when every layer's features take less memory than its float64 Gram (d x itemsize < 8 n); otherwise
  the whole batch takes the Gram form.

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

from sglp.core.activations import unit_output_hooks
from sglp.core.device import model_input
from sglp.core.errors import InvalidArgument
from sglp.core.modes import eval_mode

ESTIMATORS = ("biased", "unbiased")
KERNELS = ("linear", "rbf")
FORMS = ("auto", "gram", "features")


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


def check_options(estimator: str, kernel: str, form: str = "auto") -> None:
    if estimator not in ESTIMATORS:
        raise InvalidArgument(f"unknown CKA estimator {estimator!r}: choose one of {ESTIMATORS}")
    if kernel not in KERNELS:
        raise InvalidArgument(f"unknown CKA kernel {kernel!r}: choose one of {KERNELS}")
    if form not in FORMS:
        raise InvalidArgument(f"unknown CKA form {form!r}: choose one of {FORMS}")
    if form == "features" and kernel != "linear":
        raise InvalidArgument("similarity.form=features needs the linear kernel: use form=gram (or auto) with rbf")


# rows converted to float64 at a time in the feature form (sglp.experiment.preflight counts them)
FEATURE_CHUNK_ROWS = 1024


def _row_chunks(n: int, chunk_rows: int) -> list[slice]:
    return [slice(start, min(start + chunk_rows, n)) for start in range(0, n, chunk_rows)]


def hsic_from_features(
    features: Sequence[torch.Tensor], estimator: str = "unbiased", chunk_rows: int = FEATURE_CHUNK_ROWS
) -> torch.Tensor:
    """(L, L) linear HSIC of L feature matrices (n, d_i) over the same n rows, in any dtype, without any (n, n)
    Gram: equal to the Gram form (module docstring). Centring is exact and in float64 without a centred copy:
    X_c^T Y_c = X^T Y - n mu_x mu_y^T, with X^T Y summed over `chunk_rows` rows at a time in float64. Memory: the
    features as given (an LLM's bf16 outputs, not a float64 copy of them), one (d_i, d_j) product and two float64
    row chunks."""
    n = features[0].shape[0]
    count = len(features)
    if estimator == "unbiased" and n < 4:
        raise InvalidArgument(f"the unbiased HSIC needs at least 4 examples per batch, got {n}")
    device = features[0].device
    chunks = _row_chunks(n, chunk_rows)
    f64 = [lambda c, f=f: f[c].reshape(c.stop - c.start, -1).to(torch.float64) for f in features]
    means = [sum(f(c).sum(0) for c in chunks) / n for f in f64]  # (d_i,) float64
    frob = torch.zeros(count, count, dtype=torch.float64, device=device)
    sq = torch.zeros(count, n, dtype=torch.float64, device=device)  # squared centred row norms a_k
    for i in range(count):
        for c in chunks:
            sq[i, c] = (f64[i](c) - means[i]).square().sum(1)
        for j in range(i, count):
            cross = sum(f64[i](c).T @ f64[j](c) for c in chunks) - n * torch.outer(means[i], means[j])
            frob[i, j] = frob[j, i] = cross.square().sum()
    if estimator == "biased":
        return frob / (n - 1) ** 2
    dots, sums = sq @ sq.T, sq.sum(1)
    return (frob - (1 + 2 / (n - 2)) * dots + torch.outer(sums, sums) / ((n - 1) * (n - 2))) / (n * (n - 3))


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


def cka_from_hsic(hsic: torch.Tensor) -> torch.Tensor:
    """(L, L) CKA from an (L, L) HSIC matrix: HSIC(i, j) / sqrt(HSIC(i, i) HSIC(j, j)); 0 where a diagonal is 0."""
    diag = hsic.diagonal().clamp_min(0.0).sqrt()
    denom = diag[:, None] * diag[None, :]
    return torch.where(denom > 0, hsic / denom.clamp_min(1e-300), torch.zeros_like(hsic))


def uses_features(form: str, kernel: str, rows: int, width: float, itemsize: int = 8) -> bool:
    """Whether a layer output of `rows` rows and `width` features per row, `itemsize` bytes each, may take the
    feature form (`form="auto"`: when its features take less memory than its float64 Gram, n d itemsize < 8 n^2);
    a batch takes it only if every layer may."""
    return form == "features" or (form == "auto" and kernel == "linear" and width * itemsize < 8 * rows)


class CKAAccumulator:
    """Streams calibration batches into the L x L HSIC sums; memory per batch O(L n^2) in the Gram form or
    O(n sum_i d_i) in the feature form (module docstring), never O(batches).

    Per batch: `add(i, output)` for each layer i (any order), then `end_batch()`.
    """

    def __init__(
        self, num_layers: int, estimator: str = "unbiased", kernel: str = "linear", sigma_frac: float = 0.5,
        form: str = "auto",
    ) -> None:  # fmt: skip
        check_options(estimator, kernel, form)
        self.num_layers, self.estimator, self.kernel, self.sigma_frac = num_layers, estimator, kernel, sigma_frac
        self.form = form
        self.hsic = torch.zeros(num_layers, num_layers, dtype=torch.float64)
        self._rows: list[torch.Tensor | None] = [None] * num_layers
        self._norm: float | None = None
        self.batches = 0
        self.forms_used: list[str] = []  # per batch: "gram" or "features"

    def add(self, layer: int, output: torch.Tensor) -> None:
        rows, width = output.shape[0], output[0].numel()
        if uses_features(self.form, self.kernel, rows, width, output.element_size()):  # the model's dtype
            self._rows[layer] = output.detach().reshape(rows, -1).clone()
        else:
            self._rows[layer], self._norm = transformed_gram(output, self.estimator, self.kernel, self.sigma_frac)

    def end_batch(self) -> None:
        missing = [i for i, r in enumerate(self._rows) if r is None]
        if missing:
            raise RuntimeError(f"layers {missing} produced no output in this batch")
        rows: list[torch.Tensor] = self._rows  # type: ignore[assignment]
        if all(r.dim() == 2 for r in rows):  # feature form
            self.hsic += hsic_from_features(rows, self.estimator).cpu()
            self.forms_used.append("features")
        else:
            converted = []
            for r in rows:  # mixed widths: the feature-form layers of this batch join the Gram form
                if r.dim() == 2:
                    r, self._norm = transformed_gram(r, self.estimator, self.kernel, self.sigma_frac)
                converted.append(r)
            rows = converted
            hsic = torch.zeros_like(self.hsic, device=rows[0].device)
            for i in range(self.num_layers):  # pairwise, not one stacked (L, n^2) copy of every Gram
                for j in range(i, self.num_layers):
                    hsic[i, j] = hsic[j, i] = rows[i] @ rows[j]
            self.hsic += (hsic / self._norm).cpu()
            self.forms_used.append("gram")
        self._rows = [None] * self.num_layers
        self.batches += 1

    def matrix(self) -> torch.Tensor:
        """The (L, L) CKA matrix from all batches so far (float64)."""
        if not self.batches:
            raise RuntimeError("no batch was added")
        return cka_from_hsic(self.hsic)


def cka_matrix(
    features: Sequence[torch.Tensor], estimator: str = "unbiased", kernel: str = "linear", sigma_frac: float = 0.5,
    form: str = "auto",
) -> torch.Tensor:  # fmt: skip
    """(L, L) CKA matrix of L per-layer activations, each (n, ...) over the same n examples."""
    acc = CKAAccumulator(len(features), estimator, kernel, sigma_frac, form)
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


class _UnitsDone(Exception):
    """Raised by the CKA's hook once every unit's output of the batch is in: the rest of the forward is not needed."""


class CKA:
    """CKA (linear by default) between the outputs of a model's prunable units on calibration batches."""

    def __init__(
        self, estimator: str = "unbiased", kernel: str = "linear", sigma_frac: float = 0.5, token_rows: bool = False,
        form: str = "auto",
    ) -> None:  # fmt: skip
        check_options(estimator, kernel, form)  # fail at construction, before any data is read
        self.estimator, self.kernel, self.sigma_frac, self.form = estimator, kernel, sigma_frac, form
        self.token_rows = token_rows  # (B, T, D) outputs: one row per token (LLMs), not per sequence

    @torch.no_grad()
    def __call__(self, model: nn.Module, batches: Iterable, progress: bool = True) -> torch.Tensor:
        """(L, L) CKA matrix of unit outputs; unit i's output is what prunable unit i returns."""
        acc: CKAAccumulator | None = None
        seen: set[int] = set()

        def add(i: int, out: torch.Tensor) -> None:
            acc.add(i, out.reshape(-1, out.shape[-1]) if self.token_rows else out)  # type: ignore[union-attr]
            seen.add(i)
            if len(seen) == acc.num_layers:  # type: ignore[union-attr]
                raise _UnitsDone  # the head (an LLM's vocabulary-wide logits) is never computed

        with eval_mode(model), unit_output_hooks(model, add) as num_units:
            acc = CKAAccumulator(num_units, self.estimator, self.kernel, self.sigma_frac, self.form)
            for x, _ in tqdm(batches, desc="CKA", leave=False, disable=not progress):
                seen.clear()
                try:
                    model(model_input(x, model))
                except _UnitsDone:
                    pass
                acc.end_batch()
        if acc is None or not acc.batches:
            raise InvalidArgument("no calibration batch: the calibration split is smaller than one batch")
        return acc.matrix()
