"""What `python run.py` does, as library calls: the config -> call translation for every mode (prune, pretrain,
evaluate), the pre-flight (`dry_run=true`), the rehearsal (`rehearse=true`) and the command-line check before
Hydra runs. run.py is only Hydra's entry point over these."""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

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


def check_no_missing_values(cfg: DictConfig) -> None:
    """InvalidArgument naming the first `???` value (one only the user can give, e.g. model.path) and the fix."""
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    from sglp.core.errors import InvalidArgument

    try:
        missing = sorted(OmegaConf.missing_keys(cfg))
    except (MissingMandatoryValue, InterpolationToMissingValueError) as e:  # via an interpolation: named in e
        found = re.search(r"Missing mandatory value: (\S+)", str(e))
        missing = [found.group(1) if found else "a value"]
    if missing:
        raise InvalidArgument(f"{missing[0]} has no value: set it on the command line ({missing[0]}=...)")


def dense_cache(cfg: DictConfig, resolved: dict):
    """`dense_cache=<folder>`: the dense model's measurements keyed by its weights and everything they depend on."""
    from sglp.experiment.dense_cache import DenseCache
    from sglp.experiment.report import key_config

    if not cfg.dense_cache:
        return None
    settings = {k: key_config(resolved[k]) for k in ("kind", "dataset", "device", "latency", "lm_eval")}
    settings["kind"] = {k: v for k, v in settings["kind"].items() if k != "checkpoint"}  # the digest covers it
    return DenseCache(cfg.dense_cache, settings)


def build_task(cfg: DictConfig, device, **replace):
    """The model kind's task (configs/kind/) with its data, recovery data and fine-tuning recipe; `replace` swaps
    constructor arguments (the pre-flight passes a model built on the meta device)."""
    data = {"data": instantiate(cfg.dataset.splits, _partial_=True)}
    if cfg.dataset.get("finetune_splits"):  # recovery data of its own (an instruction set), else the training split
        data["finetune_data"] = instantiate(cfg.dataset.finetune_splits, _partial_=True)
    kind = instantiate(cfg.kind, _partial_=True, **({k: None for k in replace}))  # objects are passed as built
    return kind(**data, finetune=instantiate(cfg.finetune), device=device, progress=cfg.progress, **replace)


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
    build_task(cfg, "cpu", **({"net": model} if "net" in cfg.kind else {}))  # the kind's own option checks
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


def run_or_exit(cfg: DictConfig) -> None:
    """`run(cfg)`; bad input ends as one `sglp: error:` line and exit code 2 (no traceback)."""
    from hydra.errors import InstantiationException
    from omegaconf.errors import InterpolationResolutionError

    from sglp.core.errors import SGLPError

    try:
        run(cfg)
    except (SGLPError, InstantiationException, InterpolationResolutionError) as e:
        # Bad input: one message naming the problem and the fix, no traceback. Hydra wraps errors raised while
        # building a component, OmegaConf those of a resolver; unwrap ours, re-raise anything else.
        err: BaseException | None = e
        while err is not None and not isinstance(err, SGLPError):  # OmegaConf chains a resolver's error twice
            err = err.__cause__ or err.__context__
        node = re.search(r"full_key: (\S+)", str(e)) if not isinstance(e, SGLPError) else None
        if err is None and (stray := unexpected_setting(e)):  # a setting meant for another component
            name = f"{node.group(1)}.{stray[1]}" if node else stray[1]
            err = SGLPError(f"{name}: {stray[0]} takes no setting {stray[1]!r} (an experiment or method set it "
                            f"for another component): drop it with ~{name}, or choose a component that uses "
                            "it")  # fmt: skip
        if err is None:
            raise
        message = str(err)
        if node and isinstance(e, InterpolationResolutionError):
            message = f"{node.group(1)}: {message}"
        elif node and re.match(r"[a-z_][a-z0-9_]*(\s+entry)?=", message):  # a bare field: name the node that built it
            message = f"{node.group(1)}.{message}"
        log.error("%s", message)
        print(f"\nsglp: error: {message}", file=sys.stderr)
        sys.exit(2)


def unexpected_setting(e: BaseException) -> tuple[str, str] | None:
    """(class, argument) when Hydra failed to build a component because a config passed it an argument it does not
    take (a TypeError "X.__init__() got an unexpected keyword argument 'y'"), else None."""
    cause = e.__cause__
    hit = re.search(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", str(cause))
    return (hit.group(1), hit.group(2)) if isinstance(cause, TypeError) and hit else None


HYDRA_MODES = set(
    "--cfg -c --package -p --config-path -cp --config-name -cn --config-dir -cd --info -i --shell-completion -sc "
    "--experimental-rerun --help -h --hydra-help".split()
)


def check_command_line(argv: list[str], config_dir: str | Path) -> str | None:
    """Compose the config for the command line before Hydra runs it: an unknown option or key, or a malformed
    override, becomes one message (None when it composes). A multirun checks every swept value."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    flags = [a for a in argv if a.startswith("-")]
    if any(f.split("=")[0] in HYDRA_MODES for f in flags):
        return None  # Hydra's own modes
    overrides = [
        a for a in argv if not a.startswith("-") and not a.startswith(("hydra.", "hydra/", "+hydra", "~hydra"))
    ]
    parser = OverridesParser.create()
    for override in overrides:  # one at a time: a message about a malformed one names it
        try:
            parser.parse_overrides([override])
        except HydraException as e:
            return f"cannot parse the override {override!r}: {' '.join(str(e).split())}"
    try:
        parsed = parser.parse_overrides(overrides)
        variants = [[o.input_line for o in parsed if not o.is_sweep_override()]]
        sweeps = [o for o in parsed if o.is_sweep_override()]
        if sweeps:  # each swept value once, the other sweeps at their first value
            firsts = [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" for o in sweeps]
            variants = [variants[0] + firsts[:i] + [f"{o.get_key_element()}={v}"] + firsts[i + 1 :]
                        for i, o in enumerate(sweeps) for v in o.sweep_string_iterator()]  # fmt: skip
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            for variant in variants:
                compose(config_name="config", overrides=variant)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        message = " ".join(str(e).split())
        return f"{message} (`python run.py --help` lists the config groups and their options)"
    return None
