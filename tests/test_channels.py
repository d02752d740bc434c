"""Channel pruning (sglp.methods.channels) against independent references: the real pruned model's count, exact function
preservation, textbook formulas (SVD nuclear norms, matrix ranks, the Gram-pair CKA) and brute force."""

import copy
import csv
import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT
from torch import nn

from sglp.core.errors import InvalidArgument
from sglp.core.segmentation import fisher_segments
from sglp.core.similarity import cka_matrix
from sglp.experiment.operating_points import macs_and_params
from sglp.kinds.classification.models.resnet_cifar import resnet20, resnet56
from sglp.kinds.classification.models.vgg_cifar import vgg16_bn
from sglp.methods.channels.criteria import (
    HRank,
    ScoredCriterion,
    SegmentedChannels,
    TorchPruningImportance,
    channel_cka,
    channel_independence,
    equal_counts,
    spectral_order,
)
from sglp.methods.channels.groups import (
    RatioPolicy,
    WidthCost,
    apply_plan,
    channel_groups,
    dependency_graph,
    keep_counts_by_share,
    removal_plan,
    root_group,
)

SHAPE = (1, 28, 28)


def groups_of(model: nn.Module):
    graph = dependency_graph(model, SHAPE)
    return graph, channel_groups(model, graph)


def random_kept(groups, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for grp in groups:
        n = int(torch.randint(1, grp.width + 1, (1,), generator=g))
        out.append(sorted(torch.randperm(grp.width, generator=g)[:n].tolist()))
    return out


def test_groups_are_block_inner_convs_of_a_resnet_and_every_conv_of_vgg():
    _, res = groups_of(resnet20(10, 1))
    assert [g.name for g in res] == [f"blocks.{i}.conv1" for i in range(9)]
    assert all(g.inputs == (g.name.replace("conv1", "conv2"),) for g in res)
    _, vgg = groups_of(vgg16_bn(10, 1))
    assert len(vgg) == 13 and vgg[-1].inputs == ("classifier",)


@pytest.mark.parametrize("factory", [resnet20, vgg16_bn])
def test_width_cost_equals_counting_the_really_pruned_model(factory):
    model = factory(10, 1).eval()
    _, groups = groups_of(model)
    cost = WidthCost(model, groups, SHAPE)
    assert cost.dense == macs_and_params(model, SHAPE)
    for seed in range(3):
        kept = random_kept(groups, seed)
        pruned = apply_plan(copy.deepcopy(model), removal_plan(groups, kept, SHAPE))
        assert cost.of([len(k) for k in kept]) == macs_and_params(pruned, SHAPE)


@pytest.mark.parametrize("factory", [resnet20, vgg16_bn])
def test_removing_channels_that_are_zero_after_bn_and_relu_keeps_the_function(factory):
    """A channel whose BN scale and shift are 0 outputs ReLU(0) = 0: removing it (and the next layer's weights for
    it) must leave the network's output unchanged, so the right coupled slices were cut."""
    torch.manual_seed(0)
    model = factory(10, 1).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    _, groups = groups_of(model)
    kept = random_kept(groups, 1)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for g, keep in zip(groups, kept, strict=True):
            bn = modules[g.outputs[-1]]
            gone = [i for i in range(g.width) if i not in keep]
            bn.weight[gone], bn.bias[gone] = 0.0, 0.0
    x = torch.randn(4, *SHAPE)
    pruned = apply_plan(copy.deepcopy(model), removal_plan(groups, kept, SHAPE))
    assert macs_and_params(pruned, SHAPE)[1] < macs_and_params(model, SHAPE)[1]
    torch.testing.assert_close(pruned(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hw", [(4, 6), (2, 1)])  # more pixels than channels, and fewer (the other side's Gram)
def test_chip_equals_nuclear_norms_by_svd(hw):
    f = torch.relu(torch.randn(5, 7, *hw))
    ref = torch.zeros(7, dtype=torch.float64)
    for x in f.double():
        m = x.reshape(7, -1)
        for c in range(7):
            z = m.clone()
            z[c] = 0
            ref[c] += torch.linalg.svdvals(m).sum() - torch.linalg.svdvals(z).sum()
    torch.testing.assert_close(channel_independence(f), ref / 5)


class _Evidence:
    def __init__(self, features, width=None):
        self.features = [features]
        self.groups = [type("G", (), {"width": width or features.shape[1], "name": "g"})()]
        self.notes = {}


def test_hrank_is_the_mean_rank_of_each_channels_maps():
    f = torch.zeros(3, 4, 5, 5)
    for n in range(3):
        for c in range(4):  # channel c's maps have rank c + 1 (sums of c + 1 random outer products)
            f[n, c] = sum(torch.outer(torch.randn(5), torch.randn(5)) for _ in range(c + 1))
    assert HRank().scores(_Evidence(f), 0).tolist() == [1.0, 2.0, 3.0, 4.0]


def test_channel_cka_equals_the_pairwise_gram_formulation():
    f = torch.randn(16, 6, 3, 3)
    f[:, 1] = 2 * f[:, 0]  # scaled copies: CKA 1
    for est in ("biased", "unbiased"):
        ref = cka_matrix([f[:, c] for c in range(6)], est)
        torch.testing.assert_close(channel_cka(f, est), ref)
    assert channel_cka(f)[0, 1] == pytest.approx(1.0)


def test_spectral_order_puts_each_block_of_similar_channels_together():
    blocks = [0, 1, 2, 0, 2, 1, 0, 1, 2, 2]  # three interleaved blocks
    s = torch.tensor([[0.9 if a == b else 0.05 for b in blocks] for a in blocks], dtype=torch.float64)
    order = spectral_order(s)
    runs = [blocks[j] for j in order]
    assert sum(runs[i] != runs[i + 1] for i in range(len(runs) - 1)) == 2  # each block one contiguous run
    segs = fisher_segments(s[order][:, order], 3, "row")  # full rows: row sums cannot tell equal-sized blocks apart
    assert sorted(sorted(blocks[order[j]] for j in seg) for seg in segs) == [[0] * 3, [1] * 3, [2] * 4]


@pytest.mark.parametrize("sizes,keep", [([5, 3, 1], 4), ([10, 1, 1, 1], 3), ([4, 4], 8), ([6, 2, 2], 2), ([1], 1)])
def test_keep_counts_follow_segment_shares(sizes, keep):
    counts = keep_counts_by_share(sizes, keep)
    assert sum(counts) == keep and all(0 <= c <= s for c, s in zip(counts, sizes, strict=True))
    if keep >= len(sizes):
        assert min(counts) >= 1
    exact = [keep * s / sum(sizes) for s in sizes]
    assert max(abs(c - e) for c, e in zip(counts, exact, strict=True)) < 1 + 1e-9
    eq = equal_counts(sizes, keep)
    assert sum(eq) == keep and max(eq) - min(min(eq), *[s for s in sizes]) <= max(sizes)


class _Fixed(ScoredCriterion):
    def __init__(self, scores):
        self.s = scores

    def scores(self, evidence, i):
        return self.s


def test_sglp_on_channels_keeps_the_top_scores_of_every_segment_by_its_quota():
    torch.manual_seed(0)
    f = torch.randn(24, 12, 3, 3)
    scores = torch.randn(12)
    crit = SegmentedChannels(_Fixed(scores), k=3)
    ev = _Evidence(f)
    kept = crit.select(ev, 0, 6)
    segs = crit.segments(ev, 0)
    quotas = keep_counts_by_share([len(s) for s in segs], 6)
    expect = []
    for seg, q in zip(segs, quotas, strict=True):  # brute force: sort each segment by score
        expect += sorted(seg, key=lambda j: -float(scores[j]))[:q]
    assert kept == sorted(expect) and ev.notes[0]["segment_keep"] == quotas
    assert sorted(j for s in segs for j in s) == list(range(12))


def test_l1_importance_is_the_root_filters_l1_norm():
    import torch_pruning as tp

    model = resnet20(10, 1)
    graph, groups = groups_of(model)
    crit = TorchPruningImportance(tp.importance.MagnitudeImportance(p=1, group_reduction="first", normalizer=None))
    ev = type("E", (), {"group": lambda self, i: root_group(graph, model.blocks[0].conv1), "groups": groups})()
    torch.testing.assert_close(crit.scores(ev, 0), model.blocks[0].conv1.weight.abs().flatten(1).sum(1))


@pytest.mark.parametrize("factory,target", [(resnet56, (50.0, 42.1)), (vgg16_bn, (55.2, 46.8))])
def test_the_ratio_policy_reaches_both_cost_targets_on_the_real_model(factory, target):
    model = factory(10, 1).eval()
    _, groups = groups_of(model)
    widths, _, b = RatioPolicy(flops_reduction_pct=target[0], params_reduction_pct=target[1]).fit(
        WidthCost(model, groups, SHAPE)
    )
    pruned = apply_plan(copy.deepcopy(model), removal_plan(groups, [range(w) for w in widths], SHAPE))
    (dm, dp), (pm, pp) = macs_and_params(model, SHAPE), macs_and_params(pruned, SHAPE)
    assert abs(100 * (1 - pm / dm) - target[0]) <= 0.5 and abs(100 * (1 - pp / dp) - target[1]) <= 0.5
    assert b < 0  # fewer parameters than MACs removed: the early (cheap in parameters) layers lose more


def test_a_budget_the_policy_cannot_reach_and_bad_options_say_so():
    model = resnet20(10, 1).eval()
    _, groups = groups_of(model)
    with pytest.raises(InvalidArgument, match="cannot reach"):
        RatioPolicy(flops_reduction_pct=20.0, params_reduction_pct=85.0).fit(WidthCost(model, groups, SHAPE))
    for bad in ({}, {"ratio": 0.5, "flops_reduction_pct": 50.0}, {"ratio": 1.5}, {"flops_reduction_pct": 120.0},
                {"params_reduction_pct": 40.0}):  # fmt: skip
        with pytest.raises(InvalidArgument):
            RatioPolicy(**bad)
    for bad in ({"k": 0}, {"order": "sorted"}, {"quota": "most"}):
        with pytest.raises(InvalidArgument):
            SegmentedChannels(HRank(), **bad)


def _run(tmp_path, *overrides):
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "run.py", f"hydra.run.dir={tmp_path}/run", *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.mark.slow  # two subprocess runs (~35 s): make test-all
def test_a_channel_pruned_model_reloads_and_re_evaluates_to_its_rows_accuracy(tmp_path):
    table = tmp_path / "rows.csv"
    common = ["model=resnet20", "eval_max_batches=2", "progress=false", "logger=none", "threads=2"]
    res = _run(tmp_path, *common, "method=channels_sglp", "strategy.calib_batch_size=16", "finetune.epochs=1",
               "finetune.max_steps_per_epoch=2", "latency.batch_sizes=[1]", "latency.min_run_time=0.05",
               f"results_table={table}", "strategy.budget.flops_reduction_pct=40")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    row = list(csv.DictReader(table.open()))[-1]
    assert abs(float(row["macs_reduction_pct"]) - 40) <= 0.5 and row["units_kept"] == row["units_total"]
    saved = tmp_path / "run" / "pruned_model.pt"
    again = _run(tmp_path / "eval", *common, "mode=evaluate", f"pruned_model={saved}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"test accuracy {float(row['pruned_acc']):.2f} %" in again.stdout


def test_a_bad_channel_option_is_one_error_line(tmp_path):
    res = _run(tmp_path, "method=channels_sglp", "channel_criterion.k=0", "logger=none")
    assert res.returncode == 2
    assert [ln for ln in res.stderr.splitlines() if ln.startswith("sglp: error:")] and "k must be" in res.stderr


def test_the_channel_strategy_without_a_criterion_names_the_fix(tmp_path):
    res = _run(tmp_path, "strategy=channels", "logger=none")
    assert res.returncode == 2 and "add channel_criterion=" in res.stderr


def _depth_then_channels(*overrides: str):
    from helpers import compose_with
    from hydra.utils import instantiate

    cfg = compose_with("strategy=depth_then_channels", "channel_criterion=l1", "model=resnet20", "scorer=l1",
                       "segmenter.k=2", *overrides)  # fmt: skip
    return instantiate(cfg.strategy)


def _images(batch_size: int, num_batches: int):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(batch_size, *SHAPE, generator=g), torch.randint(0, 10, (batch_size,), generator=g))
            for _ in range(num_batches)]  # fmt: skip


def test_depth_then_channels_meets_the_total_target_against_the_dense_model_and_rebuilds():
    from sglp.core.surgery import remove_layers
    from sglp.core.units import prunable_units

    torch.manual_seed(0)
    model = resnet20(10, 1).eval()
    strategy = _depth_then_channels("search.keep=6", "strategy.budget.flops_reduction_pct=45",
                                    "strategy.calib_batch_size=8", "strategy.calib_batches=1")  # fmt: skip
    result = strategy(model, calibration=_images, cka_batches=_images(16, 1), progress=False)
    assert len(result.kept) == 6 and len(prunable_units(result.pruned)) == 6
    (dm, _), (pm, _) = macs_and_params(model, SHAPE), macs_and_params(result.pruned, SHAPE)
    (am, _) = macs_and_params(remove_layers(model, result.removed), SHAPE)
    assert 0 < 100 * (1 - am / dm) < 45 - 5, "the depth step alone removes part of the target"
    assert abs(100 * (1 - pm / dm) - 45) <= 0.5, "the total reduction is measured against the dense model"
    rebuilt = apply_plan(remove_layers(model, result.removed), result.save_meta["channel_plan"])
    rebuilt.load_state_dict(result.pruned.state_dict())
    x = _images(4, 1)[0][0]
    torch.testing.assert_close(rebuilt(x), result.pruned.eval()(x))
    assert strategy.label({"scorer": "l1", "segmenter": "fisher", "channel_criterion": "l1"}).endswith("+l1")


def test_depth_then_channels_step_targets_follow_from_what_depth_removed():
    strategy = _depth_then_channels("strategy.budget.flops_reduction_pct=50", "strategy.budget.params_reduction_pct=40")
    step = strategy.step_budget(dense=(100.0, 1000.0), after_depth=(80.0, 900.0))
    assert step.flops_reduction_pct == pytest.approx(100 * (1 - 50 / 80))  # 80 -> 50 of the dense 100
    assert step.params_reduction_pct == pytest.approx(100 * (1 - 600 / 900))
    with pytest.raises(InvalidArgument, match="keep more units"):
        strategy.step_budget(dense=(100.0, 1000.0), after_depth=(45.0, 900.0))
    with pytest.raises(Exception, match="total cost target"):  # Hydra wraps the InvalidArgument
        _depth_then_channels("strategy.budget.ratio=0.3", "strategy.budget.flops_reduction_pct=null")
