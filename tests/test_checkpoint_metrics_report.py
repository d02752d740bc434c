"""Checkpoints, cost metrics and the results table."""

import csv
import json
import multiprocessing as mp
import time

import pytest
import torch
from torch import nn

from sglp.core.checkpoint import load_pruned, load_weights, save_checkpoint
from sglp.core.errors import CheckpointError
from sglp.core.metrics import count_flops, count_parameters, measure_latency, reduction_pct
from sglp.core.surgery import remove_layers
from sglp.experiment.report import append_row, config_key, find_row, write_row
from sglp.kinds.classification.models.resnet_cifar import resnet20, resnet56


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights(resnet20(10, 1), bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(resnet20(10, 1), tmp_path / "missing.pt")


def test_checkpoint_for_another_model_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path / "m.pt", resnet20(10, 1))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(resnet56(10, 1), tmp_path / "m.pt")


def test_pruned_model_round_trip(tmp_path):
    torch.manual_seed(0)
    pruned = remove_layers(resnet20(10, 1), [1, 4, 8]).eval()
    save_checkpoint(tmp_path / "p.pt", pruned, removed=[1, 4, 8])
    loaded = load_pruned(resnet20(10, 1), tmp_path / "p.pt").eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(pruned(x), loaded(x))


def test_pruned_model_for_another_architecture_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path / "p.pt", remove_layers(resnet20(10, 1), [1]), removed=[1])
    with pytest.raises(CheckpointError, match="does not fit"):
        load_pruned(resnet56(10, 1), tmp_path / "p.pt")
    save_checkpoint(tmp_path / "q.pt", remove_layers(resnet56(10, 1), [30 - 10]), removed=[20])
    with pytest.raises(CheckpointError, match="another architecture"):
        load_pruned(resnet20(10, 1), tmp_path / "q.pt")


def test_flops_match_textbook_formula():
    """Conv: 2 * Cin * Cout * k^2 * Hout * Wout FLOPs (2 per multiply-add); linear: 2 * in * out."""
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(8 * 10 * 10, 5))
    expected = 2 * 3 * 8 * 9 * 10 * 10 + 2 * 800 * 5
    assert count_flops(net, (3, 10, 10)) == expected
    assert count_parameters(net) == 3 * 8 * 9 + 800 * 5 + 5


def test_resnet56_macs_match_known_count():
    """ResNet-56 on 32x32 CIFAR inputs: ~125.5M MACs, 0.85M parameters (He et al.; common counters)."""
    model = resnet56(10, 3)
    macs = count_flops(model, (3, 32, 32)) / 2
    assert 124e6 < macs < 127e6
    assert count_parameters(model) == pytest.approx(0.853e6, rel=0.01)


def test_latency_is_positive_and_reduction_pct():
    ms = measure_latency(resnet20(10, 1), (1, 16, 16), batch_size=2, threads=1, min_run_time=0.05)
    assert 0 < ms < 10_000
    assert reduction_pct(200.0, 50.0) == 75.0


def test_write_row_json_and_csv(tmp_path):
    row = {"method": "sglp", "kept": [0, 2], "acc": 91.5}
    write_row(row, tmp_path)
    assert json.loads((tmp_path / "row.json").read_text()) == row
    with open(tmp_path / "row.csv") as f:
        r = next(csv.DictReader(f))
    assert json.loads(r["kept"]) == [0, 2] and float(r["acc"]) == 91.5


def test_append_row_keeps_old_rows_when_columns_grow(tmp_path):
    table = tmp_path / "runs.csv"
    append_row({"a": 1, "b": 2}, table)
    append_row({"a": 3, "c": 4}, table)
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"a": "1", "b": "2", "c": ""}, {"a": "3", "b": "", "c": "4"}]


def _append_many(args):
    table, worker = args
    for i in range(20):
        append_row({"worker": worker, "i": i, f"col{worker % 3}": 1}, table)


def test_parallel_appends_lose_no_rows(tmp_path):
    table = tmp_path / "runs.csv"
    with mp.get_context("spawn").Pool(4) as pool:
        pool.map(_append_many, [(str(table), w) for w in range(4)])
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert sorted((int(r["worker"]), int(r["i"])) for r in rows) == [(w, i) for w in range(4) for i in range(20)]


def _append_same_config(args):
    table, worker, start = args
    while time.time() < start:  # every process appends at the same moment
        time.sleep(0.001)
    return append_row({"config_key": "k1", "worker": worker}, table, unique=True)


def test_identical_skip_existing_jobs_finishing_together_leave_one_row(tmp_path):
    """skip_existing: the existence check and the append are one step under the table's lock, so of several
    processes finishing the same config at once exactly one appends (the others are told so)."""
    table = tmp_path / "runs.csv"
    start = time.time() + 2.0
    with mp.get_context("spawn").Pool(4) as pool:
        appended = pool.map(_append_same_config, [(str(table), w, start) for w in range(4)])
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert sum(appended) == 1 and len(rows) == 1 and rows[0]["config_key"] == "k1"
    assert append_row({"config_key": "k2", "worker": 9}, table, unique=True)  # another config still appends
    assert not append_row({"config_key": "k1", "worker": 9}, table, unique=True)
    assert append_row({"config_key": "k1", "worker": 9}, table)  # without `unique` (a plain re-run): appended


def test_spearman_matches_textbook_formula():
    """Without ties, rho = 1 - 6 sum d^2 / (n (n^2 - 1))."""
    import random

    from sglp.core.metrics import ranks, spearman

    rng = random.Random(0)
    for n in (5, 9, 20):
        a = rng.sample(range(100), n)
        b = rng.sample(range(100), n)
        ra, rb = ranks(a), ranks(b)
        d2 = sum((x - y) ** 2 for x, y in zip(ra, rb))
        assert spearman(a, b) == pytest.approx(1 - 6 * d2 / (n * (n * n - 1)))
    assert ranks([3, 1, 2, 2]) == [4.0, 1.0, 2.5, 2.5]
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_config_key_ignores_display_and_location(tmp_path):
    base = {"seed": 0, "scorer": {"p": 2}, "checkpoint": "/a/clone/checkpoints/m.pt", "progress": True}
    key = config_key(base, root="/a/clone")
    assert key == config_key({**base, "progress": False, "paths": {"root": "/x"}}, root="/a/clone")
    assert key == config_key({**base, "checkpoint": "/b/other/checkpoints/m.pt"}, root="/b/other")
    assert key != config_key({**base, "seed": 1}, root="/a/clone")
    assert key != config_key({**base, "scorer": {"p": 1}}, root="/a/clone")
    table = tmp_path / "runs.csv"
    assert find_row(table, key) is None
    append_row({"config_key": key, "acc": 1.0}, table)
    assert find_row(table, key) == {"config_key": key, "acc": "1.0"}
    assert find_row(table, config_key({**base, "seed": 1})) is None


def test_git_commit_is_dirty_for_code_not_for_results_or_prose(tmp_path):
    """The recorded commit is `git rev-parse` of HEAD; '-dirty' only when tracked code or configs changed: a sweep
    appending to a tracked results table, or an edited README, leaves it clean. Checked against real git."""
    import subprocess

    from sglp.core.provenance import _git_commit, git_commit

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("config", "user.email", "t@t"), git("config", "user.name", "t")
    (tmp_path / "results" / "rows").mkdir(parents=True)
    for name in ("results/rows/grid.csv", "README.md", "docs.md", "sglp.py", "configs.yaml"):
        (tmp_path / name).write_text("a\n")
    git("add", "."), git("commit", "-qm", "x")
    head = git("rev-parse", "--short=12", "HEAD")

    def fresh() -> str:
        _git_commit.cache_clear()
        return git_commit(tmp_path)

    assert fresh() == head
    (tmp_path / "results" / "rows" / "grid.csv").write_text("a\nrow\n")
    (tmp_path / "README.md").write_text("edited\n")
    assert fresh() == head
    (tmp_path / "configs.yaml").write_text("edited\n")
    assert fresh() == head + "-dirty"
    (tmp_path / "configs.yaml").write_text("a\n")
    assert fresh() == head
    (tmp_path / "sglp.py").write_text("edited\n")
    assert git_commit(tmp_path) == head  # read once per process: the code it imported
    assert fresh() == head + "-dirty"
    assert git_commit(tmp_path / "results") == head + "-dirty"  # from a subfolder: still the whole repository
    assert git_commit(tmp_path.parent / "no-such-folder") == "unknown"


def test_committed_text_and_rows_hold_no_machine_paths(tmp_path, monkeypatch):
    from sglp.experiment.report import portable_path, portable_text

    assert portable_text("root: /home/u/sglp\ndata: /home/u/sglp/data", "/home/u/sglp/") == "root: .\ndata: ./data"
    assert portable_text("path: /home/u/sglp/data", "/home/u/sglp") == "path: ./data"
    assert portable_text("x", None) == "x"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "run").mkdir(parents=True)
    assert portable_path(tmp_path / "outputs" / "run") == "outputs/run"
    assert portable_path("/proc/elsewhere") == "/proc/elsewhere"
