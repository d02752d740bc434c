"""Paper tables: every experiment and method yaml composes, its table's data file agrees with the configs, every
GPU table's make target dry-runs, and the launcher configs compose (a new table or method is tested without
writing a test)."""

import csv
import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CONFIGS, compose_with, sweep_params, table_runs, target_jobs
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sglp.experiment.tables import DENSE, load_spec, table_folder

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(  # the paper tables and figures (the other experiment yamls only name runs)
    p.stem for p in (CONFIGS / "experiment").glob("*.yaml") if p.stem.startswith(("table", "fig", "layerprune"))
)
METHODS = sorted(p.stem for p in (CONFIGS / "method").glob("*.yaml"))
TABLES = sorted(p.parent.name for p in (ROOT / "experiments").glob("*/table.yaml"))


@functools.cache
def method_config(method: str):
    """The run config with only this method chosen."""
    return compose_with(f"method={method}")


@functools.cache
def labels() -> dict[str, str]:
    return {m: method_config(m).label for m in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_method_composes_with_a_label_and_builds_its_strategy(method):
    cfg = compose_with(f"method={method}", *(["model=tiny_llama", "dataset=kjv"] if method.endswith("_llm") else []))
    assert cfg.label, "a method yaml names its result rows"
    strategy = instantiate(cfg.strategy)
    assert strategy.describe()


def test_method_labels_are_unique_except_for_shared_names():
    by_label: dict[str, list[str]] = {}
    for method, label in labels().items():
        by_label.setdefault(label, []).append(method)
    # one label = one method, except the LLM variant of SGLP and LayerPrune's Eq. 1 (= magnitude L2)
    assert {k: v for k, v in by_label.items() if len(v) > 1} == {
        "SGLP (repo defaults)": ["sglp", "sglp_llm"],
        "SGLP (paper)": ["sglp_paper", "sglp_paper_llm"],
    }


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_sweeps_known_methods(experiment):
    """The first job of the sweep composes and builds; every job of the GPU sweeps is built by the dry runs below."""
    params = sweep_params(experiment)
    assert params, "an experiment declares its sweep (hydra.sweeper.params)"
    assert set(params.get("method", [])) <= set(METHODS)
    cfg = compose_with(f"experiment={experiment}", *(f"{k}={v[0]}" for k, v in params.items()))
    assert cfg.name == experiment and cfg.results_table.endswith(f"rows/{experiment}.csv")
    assert cfg.skip_existing, "table sweeps resume"
    if "method" in params:
        assert cfg.label == labels()[params["method"][0]]
    instantiate(cfg.strategy)


def test_without_segmentation_stays_one_segment_in_every_experiment():
    """A table's segmenter.k (Table 6 sets 6) never splits the whole-network method into k uniform segments."""
    checked = []
    for experiment in EXPERIMENTS:
        params = sweep_params(experiment)
        others = [f"{k}={v[0]}" for k, v in params.items() if k != "method"]
        for method in params.get("method", []):
            if OmegaConf.select(method_config(method), "segmenter.k") != 1:
                continue
            cfg = compose_with(f"experiment={experiment}", *others, f"method={method}")
            assert cfg.segmenter.k == 1, f"{experiment} splits {method} into {cfg.segmenter.k} segments"
            checked.append(experiment)
    assert "table6" in checked


@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if e.endswith("_cpu")])
def test_cpu_stand_in_runs_the_same_methods_on_local_data(experiment):
    parent = experiment.removesuffix("_cpu")
    assert parent in EXPERIMENTS, "a stand-in varies a paper experiment"
    assert sweep_params(experiment).get("method") == sweep_params(parent).get("method")
    cfg = compose_with(f"experiment={experiment}")
    assert cfg.dataset.name in ("fashion_mnist", "kjv") and not cfg.pretrain_if_missing
    if cfg.model.get("kind") == "causal_lm":
        assert cfg.model.path.endswith("tiny_llama_kjv")
    else:
        assert os.path.isfile(str(cfg.checkpoint).replace("/tmp/sglp-test", str(ROOT))), "a committed backbone"


@pytest.mark.parametrize("table", TABLES)
def test_table_data_agrees_with_the_configs(table):
    spec, paper = load_spec(ROOT / "experiments" / table)
    assert paper, "the paper's numbers are recorded"
    assert set(spec.experiments) <= set(EXPERIMENTS)
    with open(ROOT / "experiments" / table / "paper.csv", newline="") as f:
        header = next(csv.reader(f))
    needed = set(spec.match) | {c.paper for c in spec.columns if c.paper} | {"paper_method"}
    assert needed <= set(header), f"paper.csv lacks {needed - set(header)}"
    known = set(labels().values()) | {DENSE}
    for row in paper:
        assert row["experiment"] in spec.experiments
        method = row.get("method", "")
        assert not method or method in known, f"{method!r} is no method label"
        if method and method != DENSE and "method" in spec.match:
            # the method is swept by its experiment (or by a further run of its table)
            swept = sweep_params(row["experiment"]).get("method", [])
            runs = [dict(o.split("=", 1) for o in run) for run in table_runs(table)]
            extra = [r["method"] for r in runs if r.get("experiment") == row["experiment"] and "method" in r]
            methods = swept + [m for line in extra for m in line.split(",")]
            assert any(labels()[m] == method for m in methods)


# `make <short name>` = `make table-<folder>`: sglp_table1 -> table1, layerprune_table2 -> layerprune-table2
GPU_TARGETS = [t.removeprefix("sglp_").replace("_", "-") for t in TABLES]


@pytest.mark.parametrize("table", TABLES)
def test_every_table_runs_its_experiments_on_gpus_and_as_a_cpu_stand_in(table):
    """A table's runs (table.yaml) launch only experiments that exist, cover every experiment it renders, and its
    CPU stand-in runs the `_cpu` twin of each (the stand-in table reads <experiment>_cpu rows)."""
    spec, _ = load_spec(ROOT / "experiments" / table)
    for cpu, suffix in ((False, ""), (True, "_cpu")):
        launched = {dict(o.split("=", 1) for o in run if "=" in o)["experiment"] for run in table_runs(table, cpu)}
        assert launched and launched <= set(EXPERIMENTS)
        assert {e + suffix for e in spec.experiments} & launched, "the runs fill the table"


@pytest.mark.parametrize("target", ["table1", "table1-cpu", "layerprune-table2-cpu", "table-sglp_fig2a"])
def test_make_table_targets_are_pattern_rules_over_the_table_folders(target):
    """`make <short name>` and `make table-<folder>[-cpu]` run scripts/run_table.py on the folder's table.yaml."""
    res = subprocess.run(["make", "-n", target, "ARGS=dry_run=true"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    folder = table_folder(target.removeprefix("table-").removesuffix("-cpu"), ROOT / "experiments").name
    cpu = " --cpu" if target.endswith("-cpu") else ""
    assert f"scripts/run_table.py {folder}{cpu} dry_run=true" in res.stdout


@pytest.mark.parametrize("target", GPU_TARGETS)
def test_gpu_table_target_composes_every_job(target):
    """Every job of every sweep of the target composes (in process, fast); the dry runs below execute them."""
    jobs = target_jobs(target)
    for experiment, overrides in jobs:
        assert compose_with(f"experiment={experiment}", *overrides).name == experiment
    assert jobs


# Executing the dry runs costs ~10 s per run.py call: the cluster tables of the README run by default, all with -m "".
DRY_RUN_DEFAULT = {"table2", "table4"}  # table1 (~3 min) runs with make test-all


def make_dry_run(target: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    args = f"dry_run=true hydra.sweep.dir={tmp_path}/sweep progress=false"
    return subprocess.run(["make", "-s", target, f"ARGS={args}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip


@pytest.mark.parametrize(
    "target", [t if t in DRY_RUN_DEFAULT else pytest.param(t, marks=pytest.mark.slow) for t in GPU_TARGETS]
)
def test_gpu_table_target_dry_runs(tmp_path, target):
    """`make <table> ARGS=dry_run=true`: every job composes, builds the real architecture, passes its pre-flight and
    stops before training."""
    res = make_dry_run(target, tmp_path)
    reports = [ln for ln in res.stdout.splitlines() if ln.startswith("| units | yes |")]
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("dry run")]
    launched = sum(int(n) for n in re.findall(r"Launching (\d+) jobs", res.stdout + res.stderr))
    assert len(lines) == launched > 0, "every job of every sweep of the target"
    assert all("strategy=" in ln and "config_key=" in ln for ln in lines)
    assert len(reports) == launched, "every job prints its pre-flight"
    assert "| NO |" not in res.stdout
    assert not list(tmp_path.glob("sweep/*/row.json")), "a dry run writes no result"


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["experiment=table2_resnet50_imagenet", "search.keep=13"], "search.keep=13 is impossible"),  # 12 units
        (["experiment=table1_vgg16_cifar10", "search.keep=13"], "search.keep=13 is impossible"),  # 12 units
        (["experiment=table1_resnet56_cifar10", "scorer.batch_size=6000"], "scorer.batch_size=6000"),  # 5000 calib
        (["experiment=table1_resnet56_cifar10", "calibration.batch_size=6000"], "calibration.batch_size=6000"),
        (["experiment=table1_resnet56_cifar10", "preflight.device_memory_gb=0.1"], "memory: search"),
        # 8B in bf16 fits a 25 GB device for the search, not with the surgery's pruned copy beside it (30 GB)
        (
            [
                "experiment=table4_llama3_1_8b",
                "method=sglp_llm",
                "calibration.batch_size=32",
                "preflight.device_memory_gb=25",
            ],
            "memory: surgery",
        ),  # fmt: skip
        # layer fusion's retraining: a recipe the classifier cannot train with, a kind with no retraining
        (["method=fusion", "strategy.retrain={lr: 0.1}"], "a classifier retrains with an SGDConfig"),
        (
            [
                "model=tiny_llama",
                "method=fusion",
                "search.keep=8",
                "strategy.retrain={_target_: sglp.kinds.classification.training.SGDConfig, epochs: 1}",
            ],
            "CausalLMTask cannot retrain",
        ),  # fmt: skip
        # Table 4's 128 x 128-token batches as n x n Grams: 32 x 16,384^2 float64, more than an 80 GB GPU
        (["experiment=table4_llama3_1_8b", "method=sglp_llm", "similarity.form=gram"], "memory: CKA"),
    ],
)
def test_preflight_fails_where_the_run_would(tmp_path, overrides, message):
    """A job that would die (or not fit) fails its pre-flight: exit 2, one `sglp: error:` line naming the fix."""
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "run.py", *overrides, "dry_run=true", f"hydra.run.dir={tmp_path}/run", "logger=none"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("sglp: error:")]
    assert res.returncode == 2 and len(errors) == 1 and message in errors[0], res.stderr[-2000:]


@pytest.mark.parametrize("launcher,target", [("slurm", "SlurmLauncher"), ("submitit_slurm", "SlurmLauncher"),
                                             ("parallel", "JoblibLauncher")])  # fmt: skip
def test_launcher_configs_compose(launcher, target):
    cfg = compose_with(f"hydra/launcher={launcher}", "experiment=table1_resnet56_cifar10", hydra=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    OmegaConf.to_container(cfg.hydra.launcher)  # no dangling keys
