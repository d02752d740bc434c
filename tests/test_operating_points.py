"""Operating points against the papers' own cost columns.

For every paper row that reports a FLOPs or parameter reduction and that one of our jobs reproduces: the job exists
in the table's make target, and at its configured depth the real architecture (built on the meta device, random
weights, nothing downloaded) reaches the paper's figures within DEFAULT_TOLERANCE_PP. Rows marked `quoted` are
reachable at no depth at all (so saying so in paper.csv stays true). The reachable sets themselves are checked
against brute-force enumeration of every removal set.
"""

import importlib
import itertools
import math
from pathlib import Path

import pytest
import torch
from helpers import ROOT, compose_with, target_jobs
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sglp.core.surgery import remove_layers
from sglp.core.units import prunable_units
from sglp.experiment.operating_points import (
    DEFAULT_TOLERANCE_PP,
    CostModel,
    build_on_meta,
    counting_twin,
    macs_and_params,
)
from sglp.experiment.tables import as_number, cost_rows

TABLES = sorted(p.parent for p in (ROOT / "experiments").glob("*/table.yaml") if cost_rows(p.parent))
COST_ROWS = [  # the rows one of our jobs reproduces (a method we run); the others are quoted from their papers
    pytest.param(folder.name, row, id=f"{folder.name}:{row['experiment']}:{row['paper_method']}")
    for folder in TABLES
    for row in cost_rows(folder)
    if row["method"] and row["units_kept"]
]
CHANNEL_ROWS = [  # channel pruning (Table 8): every block stays, the widths meet the cost columns
    pytest.param(folder.name, row, id=f"{folder.name}:{row['experiment']}:{row['paper_method']}")
    for folder in TABLES
    for row in cost_rows(folder)
    if row["method"] and not row["units_kept"]
]


def target_of(table: str) -> str:
    return table.removeprefix("sglp_").replace("_", "-")


def job_config(table: str, experiment: str, method: str, units_kept: int):
    """The config of the target's job that runs `method` at `units_kept` on `experiment` (None if there is none)."""
    for exp, overrides in target_jobs(table):
        if exp != experiment:
            continue
        cfg = compose_with(f"experiment={exp}", *overrides)
        if cfg.label == method and cfg.search.keep == units_kept:
            return cfg
    return None


_COSTS: dict = {}


def costs(cfg) -> CostModel:
    """The cost model of a job's architecture, built on the meta device (hub weights are never fetched)."""
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    key = (str(net), tuple(cfg.dataset.input_shape))
    if key not in _COSTS:
        net.pop("weights", None)
        _COSTS[key] = CostModel.of(build_on_meta(lambda: instantiate(net)), cfg.dataset.input_shape)
    return _COSTS[key]


def test_every_table_with_cost_columns_is_covered():
    assert {f.name for f in TABLES} >= {"sglp_table1", "sglp_table2", "sglp_table3", "sglp_table5", "sglp_table7",
                                        "sglp_table8"}  # fmt: skip
    assert len(CHANNEL_ROWS) == 4


def channel_job_config(table: str, experiment: str, method: str):
    for exp, overrides in target_jobs(table):
        if exp == experiment:
            cfg = compose_with(f"experiment={exp}", *overrides, f"method={method_yaml(method)}")
            if cfg.label == method:
                return cfg
    return None


def method_yaml(label: str) -> str:
    """The method yaml whose label is `label` (configs/method/)."""
    for path in sorted((ROOT / "configs" / "method").glob("*.yaml")):
        if OmegaConf.load(path).get("label") == label:
            return path.stem
    raise AssertionError(f"no method yaml is labelled {label!r}")


@pytest.mark.parametrize("table,row", CHANNEL_ROWS)
def test_channel_rows_meet_the_papers_cost_columns_with_the_configured_budget(table, row):
    """The job's budget, fitted on the real architecture (random weights) and applied by Torch-Pruning, reaches
    the paper row's FLOPs and parameter reductions within the tolerance; a quoted row is run at another point."""
    from sglp.methods.channels.groups import WidthCost, apply_plan, channel_groups, dependency_graph, removal_plan

    macs, params = as_number(row.get("flops")), as_number(row.get("params"))
    cfg = channel_job_config(table, row["experiment"], row["method"])
    assert cfg is not None, f"make {target_of(table)} runs no job of {row['method']} on {row['experiment']}"
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    net.pop("weights", None)
    model, shape = instantiate(net).eval(), tuple(cfg.dataset.input_shape)
    strategy = instantiate(cfg.strategy)
    graph = dependency_graph(model, shape)
    groups = channel_groups(model, graph)

    widths, _, _ = strategy.budget.fit(WidthCost(model, groups, shape))
    dense = macs_and_params(model, shape)
    got = macs_and_params(apply_plan(model, removal_plan(groups, [range(w) for w in widths], shape), graph), shape)
    reached = [100 * (1 - g / d) for g, d in zip(got, dense, strict=True)]
    distance = max(abs(reached[0] - macs), abs(reached[1] - params) if params is not None else 0.0)
    if row["operating_point"] == "quoted":
        assert distance > DEFAULT_TOLERANCE_PP and "quoted" in row["note"]
        return
    assert row["operating_point"] == "channels"
    assert distance <= DEFAULT_TOLERANCE_PP, f"{row['paper_method']}: {macs} / {params} vs reached {reached}"


@pytest.mark.parametrize("table,row", COST_ROWS)
def test_paper_cost_columns_are_reachable_at_the_configured_depth(table, row):
    macs, params = as_number(row.get("flops")), as_number(row.get("params"))
    kept = int(row["units_kept"])
    cfg = job_config(table, row["experiment"], row["method"], kept)
    assert cfg is not None, f"make {target_of(table)} runs no job of {row['method']} keeping {kept} units"
    cost = costs(cfg)
    points = cost.reachable(cost.num_units - kept)
    if row["operating_point"] == "quoted":  # documented as unreachable: it must be so at every depth
        assert cost.depths_matching(macs, params) == [], f"{row['paper_method']} is reachable: not quoted"
        assert "quoted" in row["note"]
        return
    assert row["operating_point"] == "depth"
    nearest, distance = points.closest(macs, params)
    assert distance <= DEFAULT_TOLERANCE_PP, (
        f"{row['experiment']} keeps {kept} units: the paper's {macs} / {params} is {distance:.2f} pp from the nearest "
        f"point ({nearest.macs_pct:.2f} / {nearest.params_pct:.2f}); {points.describe()}"
    )
    for figure, (lo, hi) in ((macs, points.macs_range), (params, points.params_range)):
        if figure is not None:
            assert lo - DEFAULT_TOLERANCE_PP <= figure <= hi + DEFAULT_TOLERANCE_PP


@pytest.mark.parametrize("depth_shift", [-1, 1])
def test_a_wrong_depth_misses_the_papers_numbers(depth_shift):
    """SGLP's ResNet-56 CIFAR-10 point (52.6 / 56.4) holds at 13 kept and at no neighbouring depth."""
    cfg = compose_with(
        "experiment=table1_resnet56_cifar10", "method=sglp_paper_exact", f"search.keep={13 + depth_shift}"
    )
    cost = costs(cfg)
    assert cost.reachable(cost.num_units - 13).closest(52.6, 56.4)[1] <= DEFAULT_TOLERANCE_PP
    assert cost.reachable(cost.num_units - cfg.search.keep).closest(52.6, 56.4)[1] > DEFAULT_TOLERANCE_PP


def brute_force(model, shape, num_removed):
    dense_macs, dense_params = macs_and_params(model, shape)
    out = set()
    for removed in itertools.combinations(range(len(prunable_units(model))), num_removed):
        with torch.device("meta"):
            macs, params = macs_and_params(remove_layers(model, removed), shape)
        out.add(
            (round(100 * (dense_macs - macs) / dense_macs, 9), round(100 * (dense_params - params) / dense_params, 9))
        )
    return out


@pytest.mark.parametrize(
    "factory,shape,num_removed",
    [
        ("sglp.kinds.classification.models.resnet_cifar:resnet20", (3, 32, 32), 3),  # additive: per-unit sums
        # slicing the next conv: not additive, enumerated
        ("sglp.kinds.classification.models.vgg_cifar:vgg16_bn", (3, 32, 32), 2),
    ],
)
def test_reachable_set_equals_every_removal_set_counted(factory, shape, num_removed):
    module, name = factory.split(":")
    model = build_on_meta(getattr(importlib.import_module(module), name))
    cost = CostModel.of(model, shape)
    found = cost.reachable(num_removed)
    expected = brute_force(model, shape, num_removed)
    assert {(round(p.macs_pct, 9), round(p.params_pct, 9)) for p in found.points} == expected
    assert cost.additive == ("resnet" in factory)
    assert math.comb(len(prunable_units(model)), num_removed) >= len(expected)


@pytest.mark.parametrize(
    "factory",
    ["sglp.kinds.classification.models.resnet_cifar:resnet20", "sglp.kinds.classification.models.vgg_cifar:vgg16_bn"],
)
def test_counting_on_a_cpu_twin_equals_counting_on_meta(factory):
    """The cost model counts a small meta model on a zero-filled CPU copy: every count equals the count on meta."""
    module, name = factory.split(":")
    model, shape = build_on_meta(getattr(importlib.import_module(module), name)), (3, 32, 32)
    twin = counting_twin(model)
    assert next(twin.parameters()).device.type == "cpu" and next(model.parameters()).device.type == "meta"
    assert counting_twin(model, max_params=1000) is model, "a model over the limit stays on meta"
    assert CostModel.of(model, shape).model is not model
    assert CostModel.of(model, shape, cpu_copy_max_macs=1e6).model is model, "an expensive forward stays on meta"
    assert macs_and_params(twin, shape) == macs_and_params(model, shape)
    for removed in ([0], [1, 4], [2, 3, 5]):
        with torch.device("meta"):
            on_meta = macs_and_params(remove_layers(model, removed), shape)
        assert macs_and_params(remove_layers(twin, removed), shape) == on_meta


def test_meta_costs_equal_costs_of_the_real_model():
    from sglp.core.metrics import count_flops, count_parameters
    from sglp.kinds.classification.models.resnet_cifar import resnet20

    real = resnet20(num_classes=10)
    assert macs_and_params(build_on_meta(lambda: resnet20(num_classes=10)), (3, 32, 32)) == (
        count_flops(real, (3, 32, 32)) / 2,
        count_parameters(real),
    )


def test_paper_rows_name_their_depth_and_kind():
    """A row we reproduce names its depth and kind; a row of a method we do not run names that method and sets no
    depth (nothing is configured for it)."""
    for folder in TABLES:
        for row in cost_rows(folder):
            if row["method"] and row["operating_point"] == "channels":  # every unit stays: no depth
                assert not row["units_kept"], (folder.name, row)
            elif row["method"] and not row["units_kept"]:  # a channel row quoted: run at another point
                assert row["operating_point"] == "quoted" and "quoted" in row["note"], (folder.name, row)
            elif row["method"]:
                assert row["units_kept"] and row["operating_point"] in ("depth", "quoted"), (folder.name, row)
            else:
                assert row["paper_method"] and not row.get("units_kept") and not row.get("operating_point"), row
    assert Path(ROOT / "experiments" / "sglp_table1" / "README.md").exists()
