"""Data-parallel training equals single-process training on the same global batches; AMP; device choice."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from sglp.core.device import resolve_device, shard
from sglp.core.errors import InvalidArgument
from sglp.data.radio import SignalSplits
from sglp.kinds.classification.training import SGDConfig, train

ROOT = Path(__file__).resolve().parents[1]
CONFIG = SGDConfig(epochs=2, batch_size=8, lr=0.1, momentum=0.9, weight_decay=1e-3, max_steps_per_epoch=3)


def tiny_data() -> SignalSplits:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 2, 8, generator=g), torch.randint(0, 3, (40,), generator=g)
    return SignalSplits("tiny", x[:32], y[:32], x[32:36], y[32:36], x[36:], y[36:], 3, ["a", "b", "c"])


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))  # no BatchNorm


def _worker(r: int, world: int, init_file: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=r, world_size=world)
    model = tiny_model()
    train(model, tiny_data(), CONFIG, seed=5, progress=False)
    if r == 0:
        torch.save(model.state_dict(), out)
    torch.distributed.destroy_process_group()


def test_shard_puts_every_row_on_exactly_one_rank():
    t = torch.arange(10)
    parts = [shard(t, r, 3) for r in range(3)]
    assert sorted(torch.cat(parts).tolist()) == list(range(10))


def test_two_rank_ddp_training_equals_one_process(tmp_path):
    single = tiny_model()
    train(single, tiny_data(), CONFIG, seed=5, progress=False)
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    ddp = torch.load(out)
    for k, v in single.state_dict().items():
        assert torch.allclose(ddp[k], v, atol=1e-6), k
    assert not torch.allclose(ddp["1.weight"], tiny_model().state_dict()["1.weight"])  # it did train


def test_bf16_autocast_trains_and_bad_amp_is_refused():
    model = tiny_model()
    cfg = SGDConfig(epochs=3, batch_size=8, lr=0.1, amp="bf16", max_steps_per_epoch=4)
    history = train(model, tiny_data(), cfg, progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    with pytest.raises(InvalidArgument, match="amp"):
        train(tiny_model(), tiny_data(), SGDConfig(amp="fp8"), progress=False)


def test_device_choice():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(InvalidArgument, match="CUDA"):
            resolve_device("cuda")
    with pytest.raises(InvalidArgument):
        resolve_device("not-a-device")


@pytest.mark.slow
def test_torchrun_pretrain_and_prune_end_to_end(tmp_path):
    """run.py under torchrun with two CPU ranks (gloo): rank 0 writes the checkpoint and the one row."""
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "run.py",
        f"hydra.run.dir={tmp_path}/run", f"results_table={tmp_path}/runs.csv", "model=resnet20",
        f"checkpoint={tmp_path}/ckpt/model.pt", "pretrain_if_missing=true", "pretrain.epochs=1",
        "pretrain.max_steps_per_epoch=4", "finetune.max_steps_per_epoch=4", "segmenter.k=2", "search.keep=5",
        "scorer.batch_size=16", "calibration.batch_size=32", "calibration.num_batches=1", "eval_max_batches=1",
        "latency.batch_sizes=[1]", "latency.min_run_time=0.05", "logger=none", "progress=false", "threads=1",
    ]  # fmt: skip
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "ckpt" / "model.pt").exists()
    assert len((tmp_path / "runs.csv").read_text().strip().splitlines()) == 2  # header + one row (rank 0)


def test_slurm_tasks_map_to_torchrun_variables():
    from sglp.core.device import slurm_task_env

    env = {"SLURM_NTASKS": "4", "SLURM_PROCID": "2", "SLURM_LOCALID": "2", "SLURM_JOB_ID": "123456"}
    assert slurm_task_env(env) == {"RANK": "2", "LOCAL_RANK": "2", "WORLD_SIZE": "4", "MASTER_ADDR": "127.0.0.1",
                                   "MASTER_PORT": str(20000 + 123456 % 20000)}  # fmt: skip
    assert slurm_task_env({**env, "WORLD_SIZE": "4"}) == {}  # torchrun already set them
    assert slurm_task_env({**env, "SLURM_NTASKS": "1"}) == {}  # one task: no process group
    assert slurm_task_env({}) == {}
