"""Per-unit criteria (the layer-ranking baselines) against hand computations on tiny networks."""

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import randomise_bn_statistics

from sglp.core.errors import InvalidArgument
from sglp.core.units import prunable_units
from sglp.kinds.classification.models.resnet_cifar import resnet20
from sglp.kinds.classification.models.vgg_cifar import vgg16_bn
from sglp.methods.criteria.block_influence import BlockInfluence
from sglp.methods.criteria.bn_gamma import BNGamma
from sglp.methods.criteria.ensemble import Ensemble, ascending_ranks
from sglp.methods.criteria.feature_map import FeatureMapTaylor
from sglp.methods.criteria.magnitude import Magnitude
from sglp.methods.criteria.probes import Imprinting, LinearProbe, imprint_accuracy, pooled_embedding, unit_embeddings
from sglp.methods.criteria.random import RandomUnits
from sglp.methods.criteria.sr_init import SRInit, accuracy
from sglp.methods.criteria.taylor import Taylor
from sglp.methods.search import SegmentSearch


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    m = resnet20(10, 1)
    randomise_bn_statistics(m, 0.3)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


@pytest.fixture(scope="module")
def batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 1, 12, 12, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(4)]


def prepared(criterion, model, batches):
    criterion.prepare(lambda bs, n: batches[:n], model)
    return criterion.importance


def test_magnitude_is_mean_filter_norm_by_hand(net):
    for p in (1, 2):
        imp = prepared(Magnitude(p=p), net, [])
        for i, (_, unit) in enumerate(prunable_units(net)):
            norms = [
                sum(abs(v) ** p for v in conv.weight[f].flatten().tolist()) ** (1 / p)
                for conv in (unit.conv1, unit.conv2)
                for f in range(conv.weight.shape[0])
            ]
            assert imp[i].item() == pytest.approx(sum(norms) / len(norms), rel=1e-6)


def test_bn_gamma_ranks_equal_sorting_the_gammas():
    m = resnet20(10, 1)
    gammas = torch.randperm(9).double() + 1.0
    for g, (_, unit) in zip(gammas, prunable_units(m)):
        unit.bn1.weight.data.fill_(g)
        unit.bn2.weight.data.fill_(-g)  # squared: the sign does not matter
    imp = prepared(BNGamma(), m, [])
    assert imp.tolist() == pytest.approx((gammas**2).tolist())
    assert torch.argsort(imp).tolist() == torch.argsort(gammas).tolist()


def test_taylor_equals_formula_from_autograd(net, batches):
    imp = prepared(Taylor(num_batches=3), net, batches)
    x = torch.cat([b[0] for b in batches[:3]])
    y = torch.cat([b[1] for b in batches[:3]])
    units = prunable_units(net)
    weights = [w for _, u in units for w in (u.conv1.weight, u.conv2.weight)]
    grads = torch.autograd.grad(F.cross_entropy(net(x), y), weights)  # one batch of all examples
    for i in range(len(units)):
        per_filter = [
            (g[f] * w[f]).norm().item()
            for g, w in zip(grads[2 * i : 2 * i + 2], weights[2 * i : 2 * i + 2])
            for f in range(w.shape[0])
        ]
        assert imp[i].item() == pytest.approx(sum(per_filter) / len(per_filter), rel=1e-4)


def test_feature_map_taylor_equals_per_example_computation(net, batches):
    imp = prepared(FeatureMapTaylor(num_batches=1), net, batches)
    units = prunable_units(net)
    x, y = batches[0]
    expected = torch.zeros(len(units), dtype=torch.float64)
    for n in range(len(y)):  # one example at a time, gradient of its own loss (BN in eval: same as in a batch)
        outs = []
        hooks = [u.register_forward_hook(lambda _m, _i, o, acc=outs: acc.append(o)) for _, u in units]
        loss = F.cross_entropy(net(x[n : n + 1]), y[n : n + 1])
        for h in hooks:
            h.remove()
        for i, (a, g) in enumerate(zip(outs, torch.autograd.grad(loss, outs))):
            expected[i] += (a * g).mean(dim=(2, 3)).abs().mean().item()
    assert imp.tolist() == pytest.approx((expected / len(y)).tolist(), rel=1e-4)


def test_block_influence_is_one_minus_cosine_by_hand(net, batches):
    imp = prepared(BlockInfluence(num_batches=2), net, batches)
    units = [u for _, u in prunable_units(net)]
    cos_sum = torch.zeros(len(units), dtype=torch.float64)
    count = torch.zeros(len(units), dtype=torch.float64)
    for x, _ in batches[:2]:
        h = F.relu(net.bn1(net.conv1(x)))
        for i, u in enumerate(units):
            out = u(h)
            ref = u.shortcut(h)  # identity, or the option-A shortcut where the block changes shape
            for n, r, c in itertools.product(range(out.shape[0]), range(out.shape[2]), range(out.shape[3])):
                a, b = ref[n, :, r, c].double(), out[n, :, r, c].double()
                cos_sum[i] += (a @ b / (a.norm() * b.norm())).item()
                count[i] += 1
            h = out
    assert imp.tolist() == pytest.approx((1 - cos_sum / count).tolist(), rel=1e-6, abs=1e-9)


def test_imprinting_equals_nearest_class_mean_by_hand():
    g = torch.Generator().manual_seed(0)
    tr, te = torch.randn(30, 6, generator=g), torch.randn(20, 6, generator=g)
    ytr, yte = torch.arange(30) % 3, torch.randint(0, 3, (20,), generator=g)
    means = [tr[ytr == c].mean(0) for c in range(3)]
    pred = [max(range(3), key=lambda c: float(te[j] @ means[c])) for j in range(20)]
    expected = 100.0 * sum(int(p == int(t)) for p, t in zip(pred, yte)) / 20
    assert imprint_accuracy(tr, ytr, te, yte, 3) == pytest.approx(expected)


def test_pooled_embedding_follows_eq5():
    t = torch.randn(2, 16, 12, 12)
    e = pooled_embedding(t, 1024)  # d = round(sqrt(1024 / 16)) = 8
    assert e.shape == (2, 16 * 8 * 8)
    assert torch.allclose(e, F.adaptive_avg_pool2d(t, 8).flatten(1))
    assert pooled_embedding(torch.randn(2, 5, 7), 1024).shape == (2, 7)  # tokens: mean over the sequence


def test_imprinting_importance_is_gain_over_previous_unit(net, batches):
    crit = Imprinting(num_batches=4, batch_size=16, embedding_length=256, fit_per_class=None)
    imp = prepared(crit, net, batches)
    fit_y = torch.cat([y for _, y in batches[:2]])
    score_y = torch.cat([y for _, y in batches[2:]])
    fit, score = unit_embeddings(net, batches[:2], 256), unit_embeddings(net, batches[2:], 256)
    acc = [imprint_accuracy(a, fit_y, b, score_y, 10) for a, b in zip(fit, score)]
    assert len(acc) == 10 and crit.probe_accuracy == pytest.approx(acc)
    assert imp.tolist() == pytest.approx([acc[i + 1] - acc[i] for i in range(9)])


def test_imprinting_fits_on_class_balanced_training_examples(net, batches):
    """With fit_per_class, the probes are imprinted from `per_class` training examples of every class (drawn by
    the data source) and scored on all calibration batches."""
    from sglp.data.batches import ImageSplits, class_balanced_indices
    from sglp.methods.scorers.base import SplitCalibration

    g = torch.Generator().manual_seed(2)
    train = (torch.randint(0, 256, (300, 1, 12, 12), generator=g, dtype=torch.uint8), torch.arange(300) % 10)
    test = (torch.randint(0, 256, (20, 1, 12, 12), generator=g, dtype=torch.uint8), torch.arange(20) % 10)
    data = ImageSplits.from_train_test("toy", train, test, 64, 0, num_classes=10, mean=(0.5,), std=(0.25,))
    source = SplitCalibration(data, seed=3)
    crit = Imprinting(num_batches=2, batch_size=16, embedding_length=256, fit_per_class=5)
    crit.prepare(source, net)
    idx = class_balanced_indices(data.train_labels, 5, seed=3)
    assert torch.bincount(data.train_labels[idx], minlength=10).tolist() == [5] * 10
    fit = list(data.train_per_class(5, 16, seed=3))
    score = source(16, 2)
    fit_y, score_y = torch.cat([y for _, y in fit]), torch.cat([y for _, y in score])
    acc = [
        imprint_accuracy(a, fit_y, b, score_y, 10)
        for a, b in zip(unit_embeddings(net, fit, 256), unit_embeddings(net, score, 256))
    ]
    assert len(fit_y) == 50 and crit.probe_accuracy == pytest.approx(acc)
    with pytest.raises(InvalidArgument, match="fit_per_class=null"):
        Imprinting(num_batches=2, fit_per_class=5).prepare(lambda bs, n: batches[:n], net)


def test_linear_probe_separates_separable_features():
    from sglp.methods.criteria.probes import linear_probe_accuracy

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 20, generator=g) * 5
    y = torch.arange(200) % 4
    x = centres[y] + torch.randn(200, 20, generator=g) * 0.3
    assert linear_probe_accuracy(x[:100], y[:100], x[100:], y[100:], 4) == 100.0
    shuffled = y[torch.randperm(200, generator=g)]
    assert linear_probe_accuracy(x[:100], shuffled[:100], x[100:], shuffled[100:], 4) < 60.0
    with pytest.raises(InvalidArgument):
        LinearProbe(num_batches=1, fit_per_class=None)


def test_sr_init_equals_explicit_reinitialised_copies_and_restores_the_backbone(net, batches):
    before = copy.deepcopy(net.state_dict())
    rng_state = torch.get_rng_state()
    imp = prepared(SRInit(num_batches=2, seed=3), net, batches)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global RNG is untouched
    dense = accuracy(net, batches[:2])
    drops = []
    for i in (0, 4, 8):
        twin = copy.deepcopy(net)
        unit = prunable_units(twin)[i][1]
        trained = copy.deepcopy(unit.state_dict())
        # by hand, not through the library's helper: each layer's own initialisation drawn from the unit's seed,
        # in module order; BatchNorm's running statistics are buffers and keep their trained values
        torch.manual_seed(3 * 1_000_003 + i * 1009)
        for m in unit.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d)):
                m.reset_parameters()
        unit.load_state_dict({**unit.state_dict(), **{k: v for k, v in trained.items() if "running" in k or
                                                       "num_batches" in k}})  # fmt: skip
        assert not torch.equal(unit.conv1.weight, trained["conv1.weight"])
        drops.append(dense - accuracy(twin, batches[:2]))
        assert imp[i].item() == pytest.approx(drops[-1])
    assert any(d != 0 for d in drops), "the check is informative: re-initialising changes the accuracy"


def test_ensemble_is_sum_of_ascending_ranks(net, batches):
    assert ascending_ranks(torch.tensor([3.0, 1.0, 2.0, 1.0])).tolist() == [3, 0, 2, 1]
    parts = [Magnitude(2), BNGamma(), BlockInfluence(num_batches=1)]
    imp = prepared(Ensemble(parts), net, batches)
    by_hand = torch.zeros(9, dtype=torch.float64)
    for c in parts:
        order = sorted(range(9), key=lambda u: (float(c.importance[u]), u))
        for r, u in enumerate(order):
            by_hand[u] += r
    assert imp.tolist() == by_hand.tolist()


def test_top_units_shortcut_equals_enumerating_candidates(net):
    crit = RandomUnits(seed=5)
    crit.prepare(None, net)
    segments = [[0, 1, 2, 3], [4, 5, 6, 7, 8]]
    result = SegmentSearch(keep=5)(net, segments, crit, progress=False)
    for seg, choice in zip(segments, result.choices):
        best = max(itertools.combinations(seg, choice.keep), key=lambda kept: crit(net, (), seg, kept))
        assert choice.kept == list(best)
    assert result.search_space == math.comb(4, 2) + math.comb(5, 3)
    with pytest.raises(InvalidArgument, match="exhaustive"):
        SegmentSearch(keep=5, mode="paper")(net, segments, crit, progress=False)


def test_criteria_work_on_vgg_units():
    torch.manual_seed(0)
    m = vgg16_bn(10, 1).eval()
    data = [(torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))) for _ in range(2)]
    for crit in (Magnitude(1), BNGamma(), Taylor(1, 8), FeatureMapTaylor(1, 8), BlockInfluence(1, 8), SRInit(1, 8)):
        imp = prepared(crit, m, data)
        assert imp.shape == (len(prunable_units(m)),) and torch.isfinite(imp).all()
