"""CKA against a separate numpy implementation of the textbook formulas, plus its invariances."""

import numpy as np
import pytest
import torch

from sglp.core.errors import InvalidArgument
from sglp.core.similarity import CKA, CKAAccumulator, cka_matrix, linear_cka
from sglp.kinds.classification.models.resnet_cifar import resnet20


def np_hsic_biased(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. (2019): tr(K H L H) / (n - 1)^2 with explicit centring matrix H."""
    n = x.shape[0]
    k, m = x @ x.T, y @ y.T
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ m @ h)) / (n - 1) ** 2


def np_hsic_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Song et al. (2012), Eq. 5: the unbiased HSIC with zero-diagonal Grams, written out term by term."""
    n = x.shape[0]
    k, m = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(m, 0.0)
    one = np.ones(n)
    term1 = np.trace(k @ m)
    term2 = (one @ k @ one) * (one @ m @ one) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (one @ k @ m @ one)
    return float(term1 + term2 - term3) / (n * (n - 3))


def np_cka(x, y, hsic):
    return hsic(x, y) / np.sqrt(hsic(x, x) * hsic(y, y))


@pytest.mark.parametrize("estimator,hsic", [("biased", np_hsic_biased), ("unbiased", np_hsic_unbiased)])
@pytest.mark.parametrize("n,dx,dy", [(10, 5, 7), (32, 40, 3), (64, 200, 100)])
def test_linear_cka_matches_numpy_formula(estimator, hsic, n, dx, dy):
    g = np.random.default_rng(n + dx)
    x = g.normal(size=(n, dx))
    y = x[:, :1] * 2 + g.normal(size=(n, dy))  # partly related
    expected = np_cka(x, y, hsic)
    got = linear_cka(torch.from_numpy(x), torch.from_numpy(y), estimator)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_cka_identity_orthogonal_and_scale_invariance(estimator):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 20, generator=g, dtype=torch.float64)
    y = torch.randn(50, 20, generator=g, dtype=torch.float64) + 0.5 * x
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))
    assert linear_cka(x, x, estimator) == pytest.approx(1.0, abs=1e-12)
    base = linear_cka(x, y, estimator)
    assert linear_cka(x @ q, y, estimator) == pytest.approx(base, abs=1e-10)
    assert linear_cka(3.7 * x, 0.01 * y, estimator) == pytest.approx(base, abs=1e-10)


def test_cka_trailing_dims_are_flattened():
    x = torch.randn(16, 3, 4, 4, dtype=torch.float64)
    y = torch.randn(16, 8, dtype=torch.float64)
    assert linear_cka(x, y) == pytest.approx(linear_cka(x.reshape(16, -1), y), abs=1e-12)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_cka_matrix_equals_pairwise(estimator):
    g = torch.Generator().manual_seed(2)
    feats = [torch.randn(30, d, generator=g, dtype=torch.float64) for d in (5, 9, 14, 3)]
    feats[2] = feats[2] + feats[1][:, :1]
    m = cka_matrix(feats, estimator)
    for i in range(4):
        for j in range(4):
            assert m[i, j].item() == pytest.approx(linear_cka(feats[i], feats[j], estimator), abs=1e-12)
    assert torch.allclose(m, m.T)


def test_biased_cka_saturates_when_features_are_wide_unbiased_does_not():
    """The measured pitfall behind our default: d >> n makes independent features look similar."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 8000, generator=g).relu()
    y = torch.randn(64, 8000, generator=g).relu()
    assert linear_cka(x, y, "biased") > 0.9
    assert abs(linear_cka(x, y, "unbiased")) < 0.1


def test_large_mean_features_keep_precision():
    """float32 activations with a large mean: we match the float64 textbook value of the very same
    inputs, where a float32 Gram of uncentred features does not (the pitfall we avoid)."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(40, 300, generator=g) + 1e3
    y = x[:, :100] + 0.5 * torch.randn(40, 100, generator=g) - 3e2
    ref = np_cka(
        x.double().numpy() - x.double().numpy().mean(0), y.double().numpy() - y.double().numpy().mean(0), np_hsic_biased
    )
    assert linear_cka(x, y, "biased") == pytest.approx(ref, abs=1e-9)
    h = torch.eye(40) - 1 / 40
    k, l_ = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h  # float32, uncentred features
    naive = ((k * l_).sum() / torch.sqrt((k * k).sum() * (l_ * l_).sum())).item()
    assert abs(naive - ref) > 1e-4


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_minibatch_accumulation_sums_hsic_over_batches(estimator):
    """Accumulated CKA = sum_b HSIC(K_b, L_b) / sqrt(sum_b HSIC(K_b, K_b) * sum_b HSIC(L_b, L_b))."""
    hsic = np_hsic_biased if estimator == "biased" else np_hsic_unbiased
    g = np.random.default_rng(5)
    xs = [g.normal(size=(20, 12)) for _ in range(3)]
    ys = [x[:, :4] + g.normal(size=(20, 4)) for x in xs]
    acc = CKAAccumulator(2, estimator)
    for x, y in zip(xs, ys):
        acc.add(0, torch.from_numpy(x))
        acc.add(1, torch.from_numpy(y))
        acc.end_batch()
    num = sum(hsic(x, y) for x, y in zip(xs, ys))
    den = np.sqrt(sum(hsic(x, x) for x in xs) * sum(hsic(y, y) for y in ys))
    assert acc.matrix()[0, 1].item() == pytest.approx(num / den, rel=1e-9)
    # one batch through the accumulator equals the single-batch function
    single = CKAAccumulator(2, estimator)
    single.add(0, torch.from_numpy(xs[0]))
    single.add(1, torch.from_numpy(ys[0]))
    single.end_batch()
    assert single.matrix()[0, 1].item() == pytest.approx(
        linear_cka(torch.from_numpy(xs[0]), torch.from_numpy(ys[0]), estimator), abs=1e-12
    )


def test_model_cka_uses_unit_outputs_in_order():
    """CKA over hooks equals CKA of block outputs computed by running the blocks by hand."""
    torch.manual_seed(0)
    model = resnet20(10, 1).eval()
    x = torch.randn(24, 1, 16, 16)
    got = CKA("unbiased")(model, [(x, None)], progress=False)
    with torch.no_grad():
        h = torch.relu(model.bn1(model.conv1(x)))
        outs = []
        for block in model.blocks:
            h = block(h)
            outs.append(h)
    assert got.shape == (9, 9)
    assert torch.allclose(got, cka_matrix(outs, "unbiased"), atol=1e-6)


def test_model_cka_stops_the_forward_after_the_last_unit():
    """What follows the last unit (an LLM's vocabulary-wide head) is never run for the CKA; the model still works."""
    torch.manual_seed(0)
    model = resnet20(10, 1).eval()
    calls = []
    model.fc.register_forward_hook(lambda *a: calls.append(1))
    CKA("unbiased")(model, [(torch.randn(8, 1, 16, 16), None)] * 2, progress=False)
    assert calls == []
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 10) and calls == [1]  # the hooks are gone


def np_gram_rbf(x: np.ndarray, threshold: float) -> np.ndarray:
    """Kornblith et al.'s CKA demo, gram_rbf (transcribed)."""
    dot = x @ x.T
    sq_norms = np.diag(dot)
    sq_distances = -2 * dot + sq_norms[:, None] + sq_norms[None, :]
    sq_median_distance = np.median(sq_distances)
    return np.exp(-sq_distances / (2 * threshold**2 * sq_median_distance))


def np_cka_gram_biased(k: np.ndarray, m: np.ndarray) -> float:
    """Kornblith's demo cka(gram_x, gram_y) with debiased=False: centre both, then Frobenius ratio."""
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    kc, lc = h @ k @ h, h @ m @ h
    return float((kc * lc).sum() / (np.linalg.norm(kc) * np.linalg.norm(lc)))


@pytest.mark.parametrize("threshold", [0.5, 1.0])
def test_rbf_cka_matches_kornblith_demo(threshold):
    from sglp.core.similarity import cka_matrix

    g = np.random.default_rng(7)
    x = g.normal(size=(30, 12))
    y = np.tanh(x @ g.normal(size=(12, 6))) + 0.3 * g.normal(size=(30, 6))
    expected = np_cka_gram_biased(np_gram_rbf(x, threshold), np_gram_rbf(y, threshold))
    got = cka_matrix([torch.from_numpy(x), torch.from_numpy(y)], "biased", "rbf", threshold)[0, 1].item()
    assert got == pytest.approx(expected, rel=1e-9)
    assert cka_matrix([torch.from_numpy(x)] * 2, "unbiased", "rbf", threshold)[0, 1].item() == pytest.approx(1.0)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_same_data_in_several_batches_equals_one_batch(estimator):
    """HSIC sums scale alike when a batch repeats, so the accumulated CKA equals the single-batch one."""
    g = torch.Generator().manual_seed(9)
    x = torch.randn(25, 30, generator=g, dtype=torch.float64)
    y = x[:, :10] + torch.randn(25, 10, generator=g, dtype=torch.float64)
    acc = CKAAccumulator(2, estimator)
    for _ in range(3):
        acc.add(0, x)
        acc.add(1, y)
        acc.end_batch()
    assert acc.matrix()[0, 1].item() == pytest.approx(linear_cka(x, y, estimator), abs=1e-12)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_feature_form_equals_gram_form(estimator):
    """The feature form (no n x n Gram) gives the Gram form's CKA to 1e-8: narrow layers (d < n), wide ones (d > n)
    and a mix of both in one batch."""
    g = torch.Generator().manual_seed(7)
    base = torch.randn(200, 6, generator=g, dtype=torch.float64)
    feats = [base @ torch.randn(6, d, generator=g, dtype=torch.float64) + 0.3 * torch.randn(200, d, generator=g,
             dtype=torch.float64) + 5.0 for d in (8, 40, 300)]  # fmt: skip
    gram = cka_matrix(feats, estimator, form="gram")
    assert torch.allclose(cka_matrix(feats, estimator, form="features"), gram, atol=1e-8, rtol=0)
    assert torch.allclose(cka_matrix(feats, estimator, form="auto"), gram, atol=1e-8, rtol=0)  # mixed: 300 > 200
    narrow = feats[:2]
    acc = CKAAccumulator(2, estimator, form="auto")
    for i, f in enumerate(narrow):
        acc.add(i, f)
    acc.end_batch()
    assert acc.forms_used == ["features"]
    assert torch.allclose(acc.matrix(), cka_matrix(narrow, estimator, form="gram"), atol=1e-8, rtol=0)


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 1000])
def test_the_feature_forms_row_chunks_change_nothing(chunk_rows):
    """X^T Y summed over row chunks, centred through the means, equals the Gram form (large mean, n = 90)."""
    from sglp.core.similarity import hsic_from_features, transformed_gram

    g = torch.Generator().manual_seed(3)
    feats = [torch.randn(90, d, generator=g) * 0.2 + 9.0 for d in (5, 12, 30)]
    got = hsic_from_features(feats, "unbiased", chunk_rows=chunk_rows)
    grams = [transformed_gram(f, "unbiased") for f in feats]
    expected = torch.tensor([[float(a @ b) / na for b, _ in grams] for a, na in grams], dtype=torch.float64)
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=1e-9)


def test_feature_form_streams_over_batches_like_the_gram_form():
    g = torch.Generator().manual_seed(8)
    batches = [[torch.randn(64, d, generator=g) for d in (5, 9, 12)] for _ in range(3)]
    results = {}
    for form in ("gram", "features"):
        acc = CKAAccumulator(3, "unbiased", form=form)
        for outs in batches:
            for i, o in enumerate(outs):
                acc.add(i, o)
            acc.end_batch()
        results[form] = acc.matrix()
        assert acc.forms_used == [form] * 3
    assert torch.allclose(results["features"], results["gram"], atol=1e-8, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_low_precision_outputs_are_held_as_they_are_and_centred_in_float64(dtype):
    """An LLM's bf16 outputs (large mean, as hidden states have) stay in their dtype until used; the CKA equals the
    numpy formula on the same values in float64, and the auto rule compares bytes: bf16 features 4x wider than
    the batch is long are still smaller than the float64 Gram."""
    g = torch.Generator().manual_seed(9)
    outs = [(torch.randn(48, d, generator=g) * 0.1 + 20.0).to(dtype) for d in (16, 64, 100)]
    acc = CKAAccumulator(3, "unbiased", form="auto")
    for i, o in enumerate(outs):
        acc.add(i, o)
    held = [r.dtype for r in acc._rows]
    acc.end_batch()
    wide = 100 * outs[0].element_size() >= 8 * 48  # float32 at d = 100 > 2 n: the Gram form
    assert acc.forms_used == ["gram" if wide else "features"] and (wide or held == [dtype] * 3)
    x = [o.double().numpy() for o in outs]
    x = [a - a.mean(0) for a in x]  # HSIC is shift-invariant; the textbook formula loses digits at a mean of 20
    expected = np.array([[np_cka(a, b, np_hsic_unbiased) for b in x] for a in x])
    np.testing.assert_allclose(acc.matrix().numpy(), expected, atol=1e-9)


def test_feature_form_needs_the_linear_kernel():
    with pytest.raises(InvalidArgument, match="linear kernel"):
        CKA(kernel="rbf", form="features")
    with pytest.raises(InvalidArgument, match="form"):
        CKA(form="bogus")
