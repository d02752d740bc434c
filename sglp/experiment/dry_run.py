"""`dry_run=true` (the pre-flight: every component built against the real architecture on the meta device) and
`rehearse=true` (the job's own config rewritten to synthetic data and minute-sized budgets)."""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from sglp.experiment.build import build_task


def apply_rehearsal(cfg: DictConfig, run_dir: Path) -> None:
    """rehearse=true: the job's own config on synthetic data of its real shapes, random weights (LLMs: the real layer
    count at a tiny width) and minute-sized budgets; rows go to a scratch table (sglp.experiment.rehearsal)."""
    from sglp.core.errors import InvalidArgument
    from sglp.experiment.kind_configs import kind_config

    if cfg.mode != "prune" or cfg.dry_run:
        raise InvalidArgument("rehearse=true rehearses a prune job: drop mode= / dry_run=true")
    with open_dict(cfg):
        cfg.results_table = f"{cfg.rehearsal_dir}/rows/{cfg.name}.csv"
        cfg.skip_existing, cfg.pretrain_if_missing = False, False
        cfg.eval_batch_size, cfg.eval_max_batches = 16, 2
        cfg.latency.batch_sizes, cfg.latency.min_run_time = [1], 0.02
        cfg.calibration.batch_size = min(cfg.calibration.batch_size, 8)
        for key, cap in (("batch_size", 8), ("num_batches", 2)):
            if cfg.scorer.get(key) is not None:
                cfg.scorer[key] = min(int(cfg.scorer[key]), cap)
        cfg.search.budget = min(cfg.search.budget or 4, 4)
        ft = cfg.finetune
        if ft.get("steps") is not None:  # LoRA
            ft.steps, ft.warmup_steps, ft.batch_size, ft.bf16, ft.gradient_checkpointing = 2, 0, 4, False, False
        elif ft.get("epochs", 0) > 0:
            ft.epochs, ft.max_steps_per_epoch, ft.batch_size = 1, 2, min(ft.batch_size, 16)
        kind_config(cfg).rehearse(cfg, run_dir)
    print(f"rehearsal of {cfg.name} [{cfg.label}]: synthetic data, random weights, rows -> {cfg.results_table}")


def dry_run(cfg: DictConfig, resolved: dict) -> dict:
    """The pre-flight: build every component and the real architecture (meta device: no weights, no data, no
    download), run their validation against the model, report what is found or missing, the reachable operating
    point, peak memory and time estimates; exit 2 naming the fix when the job would fail (sglp.experiment.preflight)."""
    from sglp.experiment.kind_configs import kind_config
    from sglp.experiment.operating_points import build_on_meta
    from sglp.experiment.preflight import JobSpec, preflight, raise_on_failure, report
    from sglp.experiment.report import config_key
    from sglp.experiment.tables import is_stand_in

    strategy = instantiate(cfg.strategy)
    plan = {
        "experiment": cfg.name,
        "method": cfg.label or strategy.label(dict(HydraConfig.get().runtime.choices)),  # as the row names it
        "config_key": config_key(resolved, root=cfg.paths.root),
        "strategy": type(strategy).__name__,
        "finetune": type(instantiate(cfg.finetune)).__name__ if cfg.finetune.get("_target_") else None,
        "results_table": cfg.results_table,
    }
    kind = kind_config(cfg)
    language_model = kind.language_model
    model, said = kind.meta_model(cfg, build_on_meta)
    plan.update(said)
    split = cfg.dataset.splits
    if split.get("path"):  # every dataset names its location `path` (a folder or a file)
        plan["data"] = f"{split.path} ({'found' if os.path.exists(str(split.path)) else 'missing'})"
    print("dry run (nothing trained or written): " + "; ".join(f"{k}={v}" for k, v in plan.items()))

    sizes = cfg.dataset.num_examples
    calib = split.get("calib_size") or int(split.get("calib_fraction", 0) * (sizes.train + sizes.test))
    ft = cfg.finetune
    if ft.get("steps") is not None:  # LoRA: steps x batch
        ft_examples = ft.steps * ft.batch_size * ft.get("grad_accum", 1)
    else:
        ft_examples = finetune_examples(ft.get("epochs", 0), ft.get("batch_size", 1), ft.get("max_steps_per_epoch"),
                                        sizes.train - calib)  # fmt: skip
    missing_backbone = not language_model and cfg.checkpoint and not os.path.isfile(cfg.checkpoint)
    pretrain_examples = (
        cfg.pretrain.epochs * (sizes.train - calib) if cfg.pretrain_if_missing and missing_backbone else 0
    )
    job = JobSpec(
        name=cfg.name,
        method=str(plan["method"]),
        model=model,
        input_shape=tuple(cfg.dataset.input_shape),
        num_train=sizes.train,
        num_test=sizes.test,
        num_calib=calib,
        calib_batch_size=cfg.calibration.batch_size,
        calib_batches=cfg.calibration.num_batches,
        language_model=language_model,
        token_rows=bool(cfg.similarity.get("token_rows", False)),
        cka_form=cfg.similarity.get("form", "auto"),
        cka_kernel=cfg.similarity.get("kernel", "linear"),
        finetune_examples=ft_examples,
        pretrain_examples=pretrain_examples,
        param_bytes=kind.param_bytes(cfg),
        stand_in=is_stand_in(cfg.name),
        experiments_dir=Path(cfg.paths.root) / "experiments",
    )
    task = build_task(cfg, "cpu", **({"net": model} if "net" in cfg.kind else {}))  # the kind's own option checks
    strategy.check_task(task)  # what the strategy needs of the kind (e.g. fusion's retraining), as the job checks it
    checks = preflight(job, strategy, **cfg.preflight)
    print(report(job, checks))
    raise_on_failure(job, checks)
    return plan


def finetune_examples(epochs: int, batch_size: int, max_steps_per_epoch: int | None, num_train: int) -> int:
    """Examples one SGD fine-tuning sees."""
    steps = num_train // max(1, batch_size)
    if max_steps_per_epoch is not None:
        steps = min(steps, max_steps_per_epoch)
    return max(0, epochs) * steps * batch_size
