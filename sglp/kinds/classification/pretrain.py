"""Backbone pretraining: train, evaluate on the test split, save weights + log + config together."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from sglp.core.checkpoint import save_checkpoint
from sglp.core.device import barrier, is_main
from sglp.core.errors import InvalidArgument
from sglp.core.loggers import NullLogger
from sglp.core.provenance import git_commit
from sglp.data.batches import ImageSplits
from sglp.kinds.classification.training import SGDConfig, evaluate, train

log = logging.getLogger(__name__)


def pretrain_backbone(
    net: nn.Module,
    data: ImageSplits,
    config: SGDConfig,
    checkpoint: str | Path,
    seed: int = 0,
    resume: bool = True,
    overwrite: bool = False,
    logger: NullLogger | None = None,
    config_yaml: str | None = None,
    command: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `net` from scratch and write, beside `checkpoint`: the weights (model.pt), the per-epoch
    log (train_log.csv) and the resolved config (config.yaml). The resumable training state
    (train_state.pt) sits there while training runs and is removed when it ends."""
    checkpoint = Path(checkpoint)
    main = is_main()  # under torchrun, rank 0 writes the files; every rank trains
    if checkpoint.exists() and not overwrite:
        raise InvalidArgument(
            f"{checkpoint} already exists: pretraining would replace it. Pass overwrite=true to re-create it, "
            "or choose another path with checkpoint=<path>."
        )
    out_dir = checkpoint.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    if config_yaml and main:
        (out_dir / "config.yaml").write_text(config_yaml)
    logger = logger or NullLogger()
    state_path = out_dir / "train_state.pt"
    log_path = out_dir / "train_log.csv"

    def on_epoch(record: Mapping[str, Any]) -> None:
        record = dict(record)
        record.update({f"calib_{k}": v for k, v in evaluate(net, data.calib_batches(500), "calib", progress).items()})
        log.info("epoch %d: %s", record["epoch"], {k: round(v, 4) for k, v in record.items()})
        logger.log(record, step=record["epoch"])
        new = not log_path.exists() or record["epoch"] == 1
        with open(log_path, "w" if new else "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(record))
            if new:
                w.writeheader()
            w.writerow(record)

    t0 = time.perf_counter()
    history = train(
        net,
        data,
        config,
        seed=seed,
        state_path=state_path,
        resume=resume,
        on_epoch=on_epoch,
        desc="pretrain",
        progress=progress,
    )
    test = evaluate(net, data.test_batches(500), "test", progress)
    meta = {
        "test_acc": test["acc"],
        "test_loss": test["loss"],
        "epochs": config.epochs,
        "train_seconds": sum(h["seconds"] for h in history),
        "wall_seconds": time.perf_counter() - t0,
        "seed": seed,
        "git_commit": git_commit(),
        "command": command,
    }
    if main:
        save_checkpoint(checkpoint, net, **meta)
        state_path.unlink(missing_ok=True)
        log.info("saved %s: test accuracy %.2f%%", checkpoint, test["acc"])
    barrier()  # the other ranks may read the checkpoint next
    return meta
