"""Rehearsals of the GPU tables on this CPU (`make <table> ARGS=rehearse=true`): every job of the target runs end to
end on synthetic data of its real shapes, writes its row to the scratch table only, and the table renders from it."""

import csv
import os
import re
import subprocess
import sys

import pytest
import torch
from helpers import ROOT
from test_experiments import GPU_TARGETS

from sglp.experiment.rehearsal import synthetic_splits, tiny_width
from sglp.experiment.tables import table_folder

# One vision table and Table 4 in the default suite (about 2 min together); the slow suite rehearses them all.
REHEARSE_DEFAULT = {"fig2b"}  # the LLM job rehearses by default in test_hf_causal_lm; table4 (~2 min) in test-all


def test_synthetic_data_has_the_real_shapes_and_classes():
    images = synthetic_splits("imagenet", (3, 224, 224), 1000, sizes={"train": 8, "calib": 4, "test": 4})
    x, y = next(iter(images.calib_batches(4)))
    assert x.shape == (4, 3, 224, 224) and images.num_classes == 1000 and int(y.max()) < 1000
    signals = synthetic_splits("rml2018_01a", (2, 1024), 24, sizes={"train": 8, "calib": 4, "test": 4})
    x, y = next(iter(signals.test_batches(4)))
    assert x.shape == (4, 2, 1024) and x.dtype == torch.float32 and signals.num_classes == 24


def test_tiny_width_keeps_depth_and_grouped_attention():
    arch = {"num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 128256, "rms_norm_eps": 1e-5}  # fmt: skip
    tiny = tiny_width(arch, hidden=64, vocab_size=300)
    assert tiny["num_hidden_layers"] == 32 and tiny["rms_norm_eps"] == 1e-5
    assert tiny["num_attention_heads"] // tiny["num_key_value_heads"] == 32 // 8
    assert tiny["hidden_size"] == 64 and tiny["intermediate_size"] == 224 and tiny["vocab_size"] == 300


@pytest.mark.parametrize(
    "target", [t if t in REHEARSE_DEFAULT else pytest.param(t, marks=pytest.mark.slow) for t in GPU_TARGETS]
)
def test_gpu_table_rehearses_on_this_cpu(tmp_path, target):
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    args = f"rehearse=true rehearsal_dir={tmp_path}/rehearsal hydra.sweep.dir={tmp_path}/sweep progress=false threads=2"
    before = subprocess.run(["git", "status", "--porcelain", "results"], cwd=ROOT, capture_output=True, text=True)
    res = subprocess.run(["make", "-s", target, f"ARGS={args}"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=1800)  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    launched = sum(int(n) for n in re.findall(r"Launching (\d+) jobs", res.stdout + res.stderr))
    assert res.stdout.count("rehearsal of ") == launched > 0, "every job of every sweep of the target rehearsed"
    rows = [r for f in (tmp_path / "rehearsal" / "rows").glob("*.csv") for r in csv.DictReader(open(f))]
    assert len(rows) == launched and all(r["rehearsal"] == "True" for r in rows)
    assert all(r.get("pruned_acc") or r.get("ppl_pruned") for r in rows), "every stage up to the row ran"
    after = subprocess.run(["git", "status", "--porcelain", "results"], cwd=ROOT, capture_output=True, text=True)
    assert after.stdout == before.stdout, "a rehearsal writes nothing under results/"
    table = str(table_folder(target, ROOT / "experiments").relative_to(ROOT))
    out = tmp_path / "tables" / target
    cmd = [sys.executable, "scripts/make_table.py", table, "--rehearsal", "--rows", f"{tmp_path}/rehearsal/rows",
           "--out", str(out)]  # fmt: skip
    made = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    assert out.with_suffix(".md").read_text().startswith("> **REHEARSAL**")


@pytest.mark.slow  # ~30 s
def test_gpu_check_without_a_gpu_prints_its_plan_and_exits_0():
    res = subprocess.run(
        [sys.executable, "scripts/gpu_check.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "no CUDA device here" in res.stdout
    for piece in ("dataset.splits.loader=dali", "finetune.amp=bf16", "model=tiny_llama", "finetune.bf16=true"):
        assert piece in res.stdout
    res = subprocess.run([sys.executable, "scripts/gpu_check.py", "--preflight"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0 and "2 of 2 steps pass" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]
