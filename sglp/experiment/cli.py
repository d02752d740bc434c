"""What `python run.py` does, as library calls: the config -> call translation for every mode (prune, pretrain,
evaluate). The pre-flight and rehearsal are in sglp.experiment.dry_run, the command line's check and exit in
sglp.experiment.command_line; run.py is only Hydra's entry point over these."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sglp.experiment.build import build_task, check_no_missing_values, dense_cache
from sglp.experiment.dry_run import apply_rehearsal, dry_run

log = logging.getLogger("sglp")


MODES = ("prune", "pretrain", "evaluate")


def command_line() -> str:
    return "python run.py " + " ".join(HydraConfig.get().overrides.task)


def run(cfg: DictConfig) -> dict:
    """One call per mode: the pre-flight, pretraining, the evaluation of a saved pruned model, or a prune job."""
    import torch

    from sglp.core import validation
    from sglp.core.device import default_threads, init_distributed, is_main, rank, resolve_device
    from sglp.core.errors import InvalidArgument
    from sglp.experiment.pipeline import (
        JobSettings,
        control_key,
        run_evaluation,
        run_matched_controls,
        run_pretraining,
        run_pruning,
    )
    from sglp.experiment.report import NullLogger, check_writable, config_key, find_row, portable_text
    from sglp.kinds.classification.training import seed_everything
    from sglp.methods.controls import check_controls

    check_no_missing_values(cfg)
    if cfg.mode not in MODES:
        raise InvalidArgument(f"mode={cfg.mode!r}: choose one of {MODES}")
    validation.integer("threads", cfg.threads, allow_none=True)
    parallel_jobs = HydraConfig.get().launcher.get("n_jobs")  # a parallel launcher's jobs at once, else None
    torch.set_num_threads(default_threads(cfg.threads, parallel_jobs, os.cpu_count() or 1))
    init_distributed()  # a no-op unless launched by torchrun (or as SLURM tasks) with several processes
    device = resolve_device(cfg.device)
    run_dir = HydraConfig.get().runtime.output_dir
    if cfg.rehearse:
        apply_rehearsal(cfg, Path(run_dir))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if cfg.dry_run:
        return dry_run(cfg, resolved)
    seed_everything(cfg.seed)  # before the model is built: its initial weights are drawn there
    results_table, logger = cfg.results_table, instantiate(cfg.logger)
    if not is_main():  # under torchrun only rank 0 writes results and logs
        run_dir, results_table, logger = os.path.join(run_dir, f"rank{rank()}"), None, NullLogger()
    tags = [cfg.mode, cfg.model.name, cfg.dataset.name, f"table:{cfg.name}", *(["rehearsal"] if cfg.rehearse else [])]
    if results_table and cfg.mode == "prune":
        check_writable(results_table)  # before any work: a row that cannot be written loses the run
    for folder in ("dense_cache", "search_journal"):  # folders a prune job writes as it goes
        if cfg[folder] and cfg.mode == "prune":
            check_writable(cfg[folder], key=folder, fix=f"{folder}=outputs/{folder}", folder=True)
    task = build_task(cfg, device)
    strategy = instantiate(cfg.strategy) if cfg.mode == "prune" else None  # validated before any training
    controls = check_controls(cfg.matched_controls)
    settings = JobSettings(
        calib_batch_size=cfg.calibration.batch_size,
        calib_batches=cfg.calibration.num_batches,
        seed=cfg.seed,
        save_pruned_model=cfg.save_pruned_model and is_main(),
        progress=cfg.progress,
        unique_rows=cfg.skip_existing,
        finetune_budgets=tuple(cfg.finetune_budgets),
        keep_dense=bool(controls),  # the controls are cut from the dense model after the method's run
    )

    if cfg.mode == "evaluate":
        return run_evaluation(task, cfg.pruned_model)
    if cfg.mode == "pretrain" or (cfg.pretrain_if_missing and task.weights_missing()):
        meta = run_pretraining(
            task, instantiate(cfg.pretrain), seed=cfg.seed, resume=cfg.resume, overwrite=cfg.overwrite,
            name=f"pretrain-{cfg.model.name}-{cfg.dataset.name}", run_dir=run_dir, logger=logger, config=resolved,
            tags=tags, config_yaml=portable_text(OmegaConf.to_yaml(cfg, resolve=True), cfg.paths.root),
            command=command_line(),
            log_file=os.path.join(run_dir, f"{HydraConfig.get().job.name}.log"),
        )  # fmt: skip
        if cfg.mode == "pretrain":
            return meta

    key = config_key(resolved, root=cfg.paths.root)
    row = find_row(cfg.results_table, key) if cfg.skip_existing and cfg.results_table else None
    wanted = [control_key(key, c) for c in controls]
    done = {k for k in wanted if row is not None and find_row(cfg.results_table, k) is not None}
    if row is not None and (len(done) == len(wanted) or not controls) and skipped(cfg, key, run_dir):
        return {"skipped": key}
    model = task.load_model()
    if row is None:
        identity = run_identity(cfg, strategy, key)
        if cfg.search_journal:  # one journal per configuration: a rerun of the same job resumes its search
            settings = replace(settings, search_journal=os.path.join(cfg.search_journal, f"{key}.jsonl"))
        row = run_pruning(
            model, task, strategy, settings, run_dir, results_table, logger, identity, resolved,
            [*tags, identity["method"]], dense_cache(cfg, resolved),
        )  # fmt: skip
    if controls:  # random choices built like the method's own: its segments, its counts, its seed
        run_matched_controls(model, task, row, controls, settings, run_dir, results_table, dense_cache(cfg, resolved),
                             done)  # fmt: skip
    return row


def skipped(cfg: DictConfig, key: str, run_dir: str) -> bool:
    """skip_existing: whether the results table has this config's row; if so the run directory gets a copy of
    it (a sweep's summary then covers resumed jobs too)."""
    from sglp.experiment.report import find_row, write_row

    if not (cfg.skip_existing and cfg.results_table):
        return False
    row = find_row(cfg.results_table, key)
    if row is None:
        return False
    write_row(row, run_dir)
    log.info("skipped: %s already has a row for this config (config_key %s)", cfg.results_table, key)
    print(f"skipped: {cfg.results_table} already has this run (config_key {key}); skip_existing=false reruns it")
    return True


def run_identity(cfg: DictConfig, strategy, key: str) -> dict:
    """The row's identifying entries: names, seed, config key, and the option chosen in every group."""
    choices = dict(HydraConfig.get().runtime.choices)
    return {
        "experiment": cfg.name,
        "method": cfg.label or strategy.label(choices),
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "seed": cfg.seed,
        "config_key": key,
        "options": {g: choices[g] for g in sorted(choices) if not g.startswith("hydra")},
        "overrides": HydraConfig.get().job.override_dirname,
        **({"rehearsal": True} if cfg.rehearse else {}),
    }
