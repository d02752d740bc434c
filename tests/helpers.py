"""Small helpers shared by several test modules."""

import functools
import itertools
import shlex
from pathlib import Path

from hydra import compose, initialize_config_dir
from torch import nn

from sglp.experiment.resolvers import register as register_resolvers
from sglp.experiment.tables import load_spec, table_folder

register_resolvers()

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


# config options with a mandatory value (???) -> the example value the tests fill in
EXAMPLE_VALUES = {
    "model=timm": ("model.name=resnet18",),
    "strategy=channels": ("channel_criterion=sglp",),
    "strategy=depth_then_channels": ("channel_criterion=sglp",),
}


def with_examples(option: str) -> tuple[str, ...]:
    """`option` and the example values it needs to compose (EXAMPLE_VALUES)."""
    return (option, *EXAMPLE_VALUES.get(option, ()))


def compose_with(*overrides: str, hydra: bool = False):
    """The run config composed from `configs/` with these overrides (paths under /tmp/sglp-test)."""
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("config", overrides=["paths.root=/tmp/sglp-test", *overrides], return_hydra_config=hydra)


@functools.cache
def sweep_params(experiment: str) -> dict[str, list[str]]:
    """An experiment's `hydra.sweeper.params`, each value split into its choices."""
    params = compose_with(f"experiment={experiment}", hydra=True).hydra.sweeper.params or {}
    return {k: str(v).split(",") for k, v in params.items()}


def table_runs(table: str, cpu: bool = False) -> list[list[str]]:
    """The run.py override lists of a table (its table.yaml `runs`, or `cpu_runs`)."""
    spec, _ = load_spec(table_folder(table, ROOT / "experiments"))
    return [shlex.split(run) for run in (spec.cpu_runs if cpu else spec.runs)]


@functools.cache
def target_jobs(table: str, cpu: bool = False) -> list[tuple[str, tuple[str, ...]]]:
    """Every job `make table-<table>` launches: (experiment, overrides), each run's sweep grid times its overrides."""
    jobs = []
    for overrides in table_runs(table, cpu):
        experiment = next(o.split("=", 1)[1] for o in overrides if o.startswith("experiment="))
        cli = dict(o.split("=", 1) for o in overrides)
        params = {**sweep_params(experiment), **{k: v.split(",") for k, v in cli.items() if k != "experiment"}}
        for values in itertools.product(*params.values()):
            jobs.append((experiment, tuple(f"{k}={v}" for k, v in zip(params, values))))
    return jobs


def randomise_bn_statistics(model: nn.Module, mean_range: float) -> None:
    """Give every BatchNorm non-trivial running statistics (mean in ±mean_range, variance in [0.5, 1.5]),
    so that exactness checks in eval mode do not pass only because BN is the identity."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-mean_range, mean_range)
            m.running_var.uniform_(0.5, 1.5)


def read_wandb_offline_run(wandb_file) -> dict:
    """The records of an offline W&B run file (run-<id>.wandb), read back without the W&B service.

    The file is a LevelDB-style log (wandb's datastore format): a 7-byte header (":W&B", magic 0xBEE1,
    version 0), then 32 KiB blocks of records, each with a 7-byte header (crc32, length u16, type u8:
    1 full, 2 first, 3 middle, 4 last); each record is a protobuf `Record`.
    Returns {"run": RunRecord, "config": {key: value}, "summary": {key: value}, "history_keys": set, "files": set,
    "kinds": set of record types}.
    """
    import json
    import struct

    from wandb.proto import wandb_internal_pb2

    data = open(wandb_file, "rb").read()
    assert data[:4] == b":W&B", "not a W&B run file"
    block, pos, payloads, pending = 32768, 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too small for a header: padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            payloads.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            payloads.append(pending + chunk)
    out = {"run": None, "config": {}, "summary": {}, "history_keys": set(), "files": set(), "kinds": set()}
    for payload in payloads:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        out["kinds"].add(kind)
        if kind == "run":
            out["run"] = record.run
            out["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            out["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                   for i in record.summary.update})  # fmt: skip
        elif kind == "history":
            out["history_keys"].update(i.key or "/".join(i.nested_key) for i in record.history.item)
        elif kind == "files":
            out["files"].update(f.path for f in record.files.files)
    return out
