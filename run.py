"""sglp's one entry point: `python run.py [group=option ...] [key=value ...]` (Hydra).

Translates the composed config into library calls; no algorithm lives here.
`python run.py --help` lists the config groups; `python run.py --cfg job` prints the config.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from pathlib import Path

os.environ.setdefault("WANDB_SILENT", "true")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

log = logging.getLogger("sglp")


def slug(text: str, max_len: int = 100) -> str:
    """A file-name-safe, bounded version of `text` (Hydra override strings can hold paths)."""
    safe = re.sub(r"[^A-Za-z0-9=,._+-]+", "_", str(text)).strip("_")
    return safe[:max_len] or "default"


OmegaConf.register_new_resolver("slug", slug, replace=True)


MODES = ("prune", "pretrain", "evaluate")


def command_line() -> str:
    return "python run.py " + " ".join(HydraConfig.get().overrides.task)


def run(cfg: DictConfig) -> dict:
    import torch

    from sglp.device import init_distributed, is_main, rank, resolve_device
    from sglp.errors import InvalidArgument
    from sglp.pretrain import pretrain_backbone
    from sglp.report import NullLogger

    if cfg.mode not in MODES:
        raise InvalidArgument(f"mode={cfg.mode!r}: choose one of {MODES}")
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    init_distributed()  # a no-op unless launched by torchrun (or as SLURM tasks) with several processes
    device = resolve_device(cfg.device)
    run_dir = HydraConfig.get().runtime.output_dir
    if cfg.rehearse:
        apply_rehearsal(cfg, Path(run_dir))
    results_table = cfg.results_table
    logger = instantiate(cfg.logger)
    if not is_main():  # under torchrun only rank 0 writes results and logs
        run_dir, results_table, logger = os.path.join(run_dir, f"rank{rank()}"), None, NullLogger()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tags = [cfg.mode, cfg.model.name, cfg.dataset.name, f"table:{cfg.name}", *(["rehearsal"] if cfg.rehearse else [])]
    if cfg.dry_run:
        return dry_run(cfg, resolved)
    if cfg.model.get("kind") == "causal_lm":  # decoder LLMs: their own job (sglp.llm)
        return run_llm(cfg, device, run_dir, results_table, logger, resolved, tags)
    data = instantiate(cfg.dataset.splits)
    net = instantiate(cfg.model.net).to(device)

    if cfg.mode == "evaluate":  # a pruned model saved by a prune run, on the test split
        from sglp.checkpoint import load_pruned
        from sglp.training import evaluate

        if not cfg.pruned_model:
            raise InvalidArgument("mode=evaluate needs pruned_model=<run dir>/pruned_model.pt")
        pruned = load_pruned(net, cfg.pruned_model).to(device)
        result = evaluate(pruned, data.test_batches(cfg.eval_batch_size, cfg.eval_max_batches), "test", cfg.progress)
        result["params"] = sum(p.numel() for p in pruned.parameters())
        print(
            f"{cfg.pruned_model}: test accuracy {result['acc']:.2f} %, loss {result['loss']:.4f}, "
            f"{result['params']:,} parameters"
        )
        return result

    if cfg.mode == "pretrain" or (cfg.pretrain_if_missing and cfg.checkpoint and not os.path.exists(cfg.checkpoint)):
        logger.start(f"pretrain-{cfg.model.name}-{cfg.dataset.name}", resolved, run_dir, tags)
        meta = pretrain_backbone(
            net,
            data,
            instantiate(cfg.pretrain),
            cfg.checkpoint,
            seed=cfg.seed,
            resume=cfg.resume,
            overwrite=cfg.overwrite,
            logger=logger,
            config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
            command=command_line(),
            progress=cfg.progress,
        )
        logger.finish(meta)
        log_file = os.path.join(run_dir, f"{HydraConfig.get().job.name}.log")
        if is_main() and os.path.exists(log_file):  # the run's log lives beside the weights it made
            shutil.copyfile(log_file, os.path.join(os.path.dirname(cfg.checkpoint), "pretrain.log"))
        if cfg.mode == "pretrain":
            return meta

    from sglp.pipeline import PruneSettings, run_pruning
    from sglp.report import config_key

    settings = PruneSettings(
        calib_batch_size=cfg.calibration.batch_size,
        calib_batches=cfg.calibration.num_batches,
        eval_batch_size=cfg.eval_batch_size,
        eval_max_batches=cfg.eval_max_batches,
        latency_batch_sizes=list(cfg.latency.batch_sizes),
        latency_threads=cfg.latency.threads,
        latency_min_run_time=cfg.latency.min_run_time,
        save_pruned_model=cfg.save_pruned_model and is_main(),
        seed=cfg.seed,
        device=str(device),
        progress=cfg.progress,
    )
    key = config_key(resolved, root=cfg.paths.root)
    if skipped(cfg, key, run_dir):
        return {"skipped": key}
    strategy = instantiate(cfg.strategy)
    identity = run_identity(cfg, strategy, key)
    row = run_pruning(
        net=net,
        data=data,
        checkpoint=cfg.checkpoint,
        strategy=strategy,
        finetune=instantiate(cfg.finetune),
        settings=settings,
        run_dir=run_dir,
        results_table=results_table,
        logger=logger,
        identity=identity,
        config=resolved,
        tags=[*tags, identity["method"]],
    )
    return row


def skipped(cfg: DictConfig, key: str, run_dir: str) -> bool:
    """skip_existing: whether the results table has this config's row; if so the run directory gets a copy of
    it (a sweep's summary then covers resumed jobs too)."""
    from sglp.report import find_row, write_row

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
    groups = ("strategy", *getattr(strategy, "label_groups", ()))
    return {
        "experiment": cfg.name,
        "method": cfg.label or "/".join(str(choices.get(g)) for g in groups),
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
    count at a tiny width) and minute-sized budgets; rows go to a scratch table (sglp.rehearsal)."""
    from sglp.errors import InvalidArgument
    from sglp.rehearsal import rehearsal_llm, synthetic_corpus

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
        if cfg.model.get("kind") == "causal_lm":
            if not cfg.model.get("arch"):
                raise InvalidArgument(
                    f"rehearse=true needs model.arch (the decoder's config fields) for {cfg.model.name}"
                )
            corpus = synthetic_corpus(run_dir / "rehearsal" / "corpus.txt", seed=cfg.seed)
            arch = OmegaConf.to_container(cfg.model.arch, resolve=True)
            cfg.model.path = str(rehearsal_llm(arch, corpus, run_dir / "rehearsal" / "model"))
            cfg.model.dtype, cfg.model.device_map = "float32", None
            cfg.dataset.splits = {"_target_": "sglp.data.text.text_splits", "path": str(corpus), "seq_len": 32,
                                  "calib_fraction": 0.1, "test_fraction": 0.1}  # fmt: skip
            cfg.dataset.pop("finetune_splits", None)
            cfg.tasks = {"sglp_continuation": "acc"}  # the local lm-eval task (hub tasks need the hub)
            cfg.lm_eval.task_limit, cfg.lm_eval.local_items = 16, 32
        else:
            cfg.checkpoint = None  # random weights: no checkpoint, no download
            for key in ("weights", "weights_path"):
                if cfg.model.net.get(key) is not None:
                    cfg.model.net[key] = None
            cfg.dataset.splits = {"_target_": "sglp.rehearsal.synthetic_splits", "name": cfg.dataset.name,
                                  "input_shape": list(cfg.dataset.input_shape),
                                  "num_classes": cfg.dataset.num_classes, "seed": cfg.seed}  # fmt: skip
    print(f"rehearsal of {cfg.name} [{cfg.label}]: synthetic data, random weights, rows -> {cfg.results_table}")


def dry_run(cfg: DictConfig, resolved: dict) -> dict:
    """The pre-flight: build every component and the real architecture (meta device: no weights, no data, no
    download), run their validation against the model, report what is found or missing, the reachable operating
    point, peak memory and time estimates; exit 2 naming the fix when the job would fail (sglp.preflight)."""
    from sglp.operating_points import build_on_meta
    from sglp.preflight import JobSpec, preflight, raise_on_failure, report
    from sglp.report import config_key

    strategy = instantiate(cfg.strategy)
    plan = {
        "experiment": cfg.name,
        "method": cfg.label or HydraConfig.get().runtime.choices.get("method"),
        "config_key": config_key(resolved, root=cfg.paths.root),
        "strategy": type(strategy).__name__,
        "finetune": type(instantiate(cfg.finetune)).__name__ if cfg.finetune.get("_target_") else None,
        "results_table": cfg.results_table,
    }
    language_model = cfg.model.get("kind") == "causal_lm"
    if language_model:
        plan["model"] = f"{cfg.model.path} ({'found' if os.path.exists(cfg.model.path) else 'hub id or missing'})"
        arch = cfg.model.get("arch") or cfg.model.build
        extra = {} if cfg.model.get("arch") else {"vocab_size": cfg.model.vocab_size}
        model = build_on_meta(lambda: instantiate(arch, **extra))
    else:
        weights = {"weights": None} if cfg.model.net.get("weights") else {}  # hub weights: fetched by the real run
        model = build_on_meta(lambda: instantiate(cfg.model.net, **weights))
        plan["model"] = f"{type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters"
        if weights:
            plan["model"] += f", weights {cfg.model.net.weights} (fetched when run)"
        found = "weights as built by the model config" if cfg.checkpoint is None else (
            "found" if os.path.isfile(cfg.checkpoint) else "missing")  # fmt: skip
        plan["checkpoint"] = f"{cfg.checkpoint} ({found})"
    split = cfg.dataset.splits
    data_dir = split.get("data_dir") or split.get("path") or split.get("root") or split.get("local_dir")
    if data_dir:
        plan["data"] = f"{data_dir} ({'found' if os.path.exists(str(data_dir)) else 'missing'})"
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
        param_bytes=2 if language_model and cfg.model.dtype in ("bfloat16", "float16") else 4,
        stand_in=cfg.name.endswith("_cpu"),
        experiments_dir=Path(cfg.paths.root) / "experiments",
    )
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


def run_llm(cfg: DictConfig, device, run_dir: str, results_table, logger, resolved: dict, tags: list) -> dict:
    """mode=pretrain: tokenizer + tiny LM on the local corpus; mode=prune: SGLP (or a baseline) on the LLM."""
    from sglp.errors import InvalidArgument
    from sglp.report import config_key

    if cfg.mode == "evaluate":
        raise InvalidArgument("mode=evaluate is for vision models; evaluate a pruned LLM with model.path=<dir>")
    if cfg.mode == "pretrain" or (cfg.pretrain_if_missing and not os.path.exists(cfg.model.path)):
        from sglp.data.text import read_corpus
        from sglp.llm.pretrain import pretrain_causal_lm
        from sglp.llm.tokenizer import train_tokenizer

        text = read_corpus(cfg.dataset.splits.path)
        split = cfg.dataset.splits
        tokenizer = train_tokenizer(
            text[: int(len(text) * (1 - split.calib_fraction - split.test_fraction))], cfg.model.vocab_size
        )  # fmt: skip  (fitted on the training text only)
        data = instantiate(cfg.dataset.splits, encode=tokenizer.encode)
        ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                   eos_token_id=tokenizer.eos_token_id)  # fmt: skip
        model = instantiate(cfg.model.build, vocab_size=len(tokenizer), **ids).to(device)
        logger.start(f"pretrain-{cfg.model.name}-{cfg.dataset.name}", resolved, run_dir, tags)
        meta = pretrain_causal_lm(
            model, tokenizer, data, instantiate(cfg.pretrain), cfg.model.path, seed=cfg.seed, resume=cfg.resume,
            overwrite=cfg.overwrite, command=command_line(), progress=cfg.progress,
        )  # fmt: skip
        (Path(cfg.model.path) / "config_run.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        logger.finish(meta)
        print(f"{cfg.model.path}: test perplexity {meta['test_perplexity']:.2f} "
              f"(unigram {meta['unigram_test_perplexity']:.1f}), {meta['parameters']:,} parameters")  # fmt: skip
        if cfg.mode == "pretrain":
            return meta

    from sglp.llm.models import load_causal_lm
    from sglp.llm.pipeline import LLMSettings, run_llm_pruning

    key = config_key(resolved, root=cfg.paths.root)
    if skipped(cfg, key, run_dir):
        return {"skipped": key}
    model, tokenizer = load_causal_lm(cfg.model.path, cfg.model.dtype, cfg.model.device_map)
    if cfg.model.device_map is None:
        model.to(device)
    data = instantiate(cfg.dataset.splits, encode=tokenizer.encode)
    finetune_data = (  # recovery data of its own (an instruction set), else the training split
        instantiate(cfg.dataset.finetune_splits, encode=tokenizer.encode)
        if cfg.dataset.get("finetune_splits")
        else None
    )
    strategy = instantiate(cfg.strategy)
    settings = LLMSettings(
        calib_batch_size=cfg.calibration.batch_size,
        calib_batches=cfg.calibration.num_batches,
        eval_batch_size=cfg.eval_batch_size,
        eval_max_batches=cfg.eval_max_batches,
        tasks=dict(cfg.tasks),
        task_limit=cfg.lm_eval.task_limit,
        local_items=cfg.lm_eval.local_items,
        latency_batch_sizes=list(cfg.latency.batch_sizes),
        latency_min_run_time=cfg.latency.min_run_time,
        save_pruned_model=cfg.save_pruned_model,
        seed=cfg.seed,
        progress=cfg.progress,
    )
    identity = run_identity(cfg, strategy, key)
    return run_llm_pruning(
        model, tokenizer, data, strategy, instantiate(cfg.finetune), settings, run_dir, results_table, logger,
        identity, resolved, [*tags, identity["method"]], finetune_data=finetune_data,
    )  # fmt: skip


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.errors import InstantiationException

    from sglp.errors import SGLPError

    try:
        run(cfg)
    except (SGLPError, InstantiationException) as e:
        # Bad input: one message naming the problem and the fix, no traceback. Hydra wraps errors
        # raised while building a component; unwrap ours, re-raise anything else.
        err = e.__cause__ if isinstance(e, InstantiationException) else e
        if not isinstance(err, SGLPError):
            raise
        log.error("%s", err)
        print(f"\nsglp: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
