"""Fault injection and bad input, run against run.py as a user would meet them; writes results/faults.md.

python tests/faults.py                       # everything (~15 min alone on 2 cores)
python tests/faults.py --only bad            # one section: bad | kill | race
python tests/faults.py --quick               # a short subset (the default test suite runs it)

1. Bad input: every case is one `python run.py ...` that must end with exit code 2 and exactly one
   `sglp: error:` line (no traceback), within seconds of its start.
2. kill -9 at random moments of backbone pretraining, LM pretraining, a prune job (search, fine-tuning, row
   write) and a multirun sweep with skip_existing=true; then the same command again until it completes. Counts
   the files that cannot be read after a kill, rows lost or duplicated, and compares the final weights / rows
   with an uninterrupted run started in another process.
3. Races: processes appending rows with new columns (header rewrites) to one table while some are killed; two
   identical skip_existing jobs started together.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ENV = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "HYDRA_FULL_ERROR": "0", "PYTHONHASHSEED": "0"}
SECONDS_LIMIT = 30.0  # "within seconds": Python + torch start-up is ~5 s of it on this machine
RESNET20 = ROOT / "checkpoints/resnet20_fashion_mnist/model.pt"
TINY_LLAMA = ROOT / "checkpoints/tiny_llama_kjv"
# a small prune job (ResNet-20, 9 units -> 6): seconds, yet every stage runs
SMALL = [
    "model=resnet20",
    f"checkpoint={RESNET20}",
    "search.keep=6",
    "segmenter.k=2",
    "calibration.batch_size=32",
    "calibration.num_batches=1",
    "scorer.batch_size=32",
    "eval_max_batches=4",
    "finetune.max_steps_per_epoch=20",
    "latency.batch_sizes=[1]",
    "latency.min_run_time=0.05",
    "progress=false",
    "logger=none",
    "threads=1",
    "save_pruned_model=false",
]


# ---------------------------------------------------------------------------------------------------- bad input


@dataclass
class Case:
    group: str
    overrides: list[str]
    setup: Callable[[Path], None] | None = None  # writes the broken files the case points at (in the work dir)
    quick: bool = False  # part of --quick


def garbage(path: Path, size: int = 4096) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(0).randbytes(size))


def fmnist_copy(work: Path, damage: str) -> None:
    """Fashion-MNIST's four IDX files in work/fm, one of them damaged (`garbage` or `truncated`)."""
    from sglp.data.fashion_mnist import find_fashion_mnist

    files = find_fashion_mnist("data", download=False)
    out = work / "fm"
    out.mkdir(parents=True, exist_ok=True)
    for p in files.values():
        shutil.copy(p, out / Path(p).name)
    victim = out / Path(files["train_images"]).name
    if damage == "garbage":
        garbage(victim)
    else:
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])


def llm_copy(work: Path, damage: str) -> None:
    """The tiny LLaMA's folder in work/llm, damaged: `tokenizer` (garbage tokenizer.json), `weights` (truncated
    safetensors) or `config` (config.json not JSON)."""
    out = work / "llm"
    shutil.copytree(TINY_LLAMA, out, dirs_exist_ok=True)
    if damage == "none":
        return
    if damage == "tokenizer":
        (out / "tokenizer.json").write_text("{not json")
    elif damage == "weights":
        w = out / "model.safetensors"
        w.write_bytes(w.read_bytes()[:1000])
    else:
        (out / "config.json").write_text("][")


FM_DAMAGED = ["dataset.splits.path=WORK/fm", "dataset.splits.search_system=false", "dataset.splits.download=false"]
LLM = ["model=tiny_llama", "model.path=WORK/llm", "tasks=local", "progress=false", "logger=none"]

CASES: list[Case] = [
    # model
    Case("model", ["model=resnet999"], quick=True),
    Case("model", ["model=resnet20", "checkpoint=" + str(ROOT / "checkpoints/resnet56_fashion_mnist/model.pt")]),
    Case("model", ["model=vgg16_bn", "checkpoint=WORK/none/model.pt"]),
    Case("model", ["model.net.num_classes=0"]),
    # dataset
    Case("dataset", ["dataset=cifar10", "dataset.splits.path=WORK/empty", "dataset.splits.download=false"]),
    Case("dataset", ["dataset=imagenette2", "dataset.splits.path=WORK/empty"]),
    Case("dataset", ["dataset=mnist_typo"]),
    Case("dataset", ["dataset.splits.calib_size=-5"]),
    Case("dataset", ["dataset.splits.calib_size=70000"]),
    Case("dataset", ["dataset.splits.loader=bogus"]),
    Case("dataset", FM_DAMAGED, lambda w: fmnist_copy(w, "garbage"), quick=True),
    Case("dataset", FM_DAMAGED, lambda w: fmnist_copy(w, "truncated")),
    Case(
        "dataset",
        ["dataset.splits.path=WORK/empty", "dataset.splits.search_system=false", "dataset.splits.download=false"],
    ),
    # similarity
    Case("similarity", ["similarity=bogus"]),
    Case("similarity", ["similarity.estimator=median"]),
    Case("similarity", ["similarity.kernel=poly"]),
    Case("similarity", ["similarity.form=sideways"]),
    # segmenter
    Case("segmenter", ["segmenter.k=0"]),
    Case("segmenter", ["segmenter.k=40"]),
    Case("segmenter", ["segmenter.k=auto", "segmenter.k_max=0"]),
    Case("segmenter", ["segmenter.representation=columns"]),
    Case("segmenter", ["segmenter=fisherr"]),
    # search
    Case("search", ["search.keep=0"], quick=True),
    Case("search", ["search.keep=40"]),
    Case("search", ["search.keep=-3"]),
    Case("search", ["search.keep=null", "search.ratio=1.5"]),
    Case("search", ["search.keep=10", "search.ratio=0.5"]),
    Case("search", ["search.order=backwards"]),
    Case("search", ["search.mode=greedy"]),
    Case("search", ["search.budget=0"]),
    Case("search", ["search.per_segment=[1,1]"]),
    # scorer
    Case("scorer", ["scorer.batch_size=0"]),
    Case("scorer", ["scorer.num_batches=0"]),
    Case("scorer", ["scorer=gradnorm2"]),
    Case("scorer", ["scorer=perplexity"]),
    # strategy / method
    Case("strategy", ["strategy=bogus"]),
    Case("strategy", ["strategy=fusion", "search.keep=0"]),
    Case("strategy", ["experiment=table8_resnet56_cifar10_cpu", "method=sglp", "dry_run=true"]),  # a channel budget
    Case(
        "strategy",
        [
            "strategy=depth_then_channels",
            "channel_criterion=l1",
            "search.keep=3",
            "strategy.budget.flops_reduction_pct=20",
            "dry_run=true",
        ],
    ),  # fmt: skip
    Case("strategy", ["strategy=fusion", "strategy.retrain={lr: 0.1}", "dry_run=true"]),  # not an SGDConfig
    Case(
        "strategy",
        [
            "model=tiny_llama",
            "strategy=fusion",
            "search.keep=8",
            "dry_run=true",
            "strategy.retrain={_target_: sglp.kinds.classification.training.SGDConfig, epochs: 1}",
        ],
    ),  # fmt: skip  # an LM kind has no retraining
    Case("method", ["method=sglp_typo"]),
    Case("method", ["method=sglp_llm"]),
    # finetune
    Case("finetune", ["finetune.lr=-1"], quick=True),
    Case("finetune", ["finetune.epochs=-1"]),
    Case("finetune", ["finetune.schedule=bogus"]),
    Case("finetune", ["finetune.batch_size=0"]),
    Case("finetune", ["finetune.momentum=2"]),
    Case("finetune", ["finetune.weight_decay=-1"]),
    Case("finetune", ["finetune.amp=fp8"]),
    Case("finetune", ["finetune=lora"]),
    Case("finetune", ["finetune_budgets=[0]"]),
    Case("finetune", ["finetune=none", "finetune_budgets=[50]"]),
    # tasks / experiment
    Case("tasks", ["tasks=mmlu_typo"]),
    Case("experiment", ["experiment=table9"]),
    Case(
        "experiment",
        [
            "experiment=table1_resnet56_cifar10",
            "paths.data=WORK/empty",
            "pretrain_if_missing=false",
            "checkpoint=WORK/none/model.pt",
        ],
    ),
    # options of the job itself
    Case("job", ["mode=train"]),
    Case("job", ["eval_batch_size=0"]),
    Case("job", ["eval_max_batches=0"]),
    Case("job", ["latency.batch_sizes=[0]"]),
    Case("job", ["latency.min_run_time=0"]),
    Case("job", ["calibration.batch_size=0"]),
    Case("job", ["calibration.num_batches=0"]),
    Case("job", ["threads=-1"]),
    Case("job", ["device=tpu"]),
    Case("job", ["device=cuda"]),
    # paths and files
    Case("paths", ["checkpoint=WORK/none/model.pt"], quick=True),
    Case("paths", ["checkpoint=WORK/corrupt.pt"], lambda w: garbage(w / "corrupt.pt")),
    Case("paths", ["checkpoint=WORK/empty.pt"], lambda w: (w / "empty.pt").write_bytes(b"")),
    Case("paths", ["results_table=/proc/sglp/runs.csv"]),
    Case("paths", ["dense_cache=/proc/sglp/cache"]),
    Case("paths", ["search_journal=/proc/sglp/journal"]),
    Case("paths", ["mode=evaluate", "pruned_model=WORK/none/pruned_model.pt"]),
    Case("paths", ["mode=evaluate", "pruned_model=WORK/corrupt.pt"], lambda w: garbage(w / "corrupt.pt")),
    Case("paths", ["mode=evaluate"]),
    Case("paths", ["mode=pretrain", f"checkpoint={RESNET20}", "model=resnet20"]),
    # LLM
    Case("llm", [*LLM, "search.keep=0"], lambda w: llm_copy(w, "none")),
    Case("llm", [*LLM, "search.keep=13"], lambda w: llm_copy(w, "none")),
    Case("llm", [*LLM, "+model.layers_path=model.blocks"], lambda w: llm_copy(w, "none")),
    Case("llm", [*LLM], lambda w: llm_copy(w, "tokenizer"), quick=True),
    Case("llm", [*LLM], lambda w: llm_copy(w, "weights")),
    Case("llm", [*LLM], lambda w: llm_copy(w, "config")),
    Case("llm", ["model=tiny_llama", "model.path=WORK/nowhere"]),
    Case("llm", ["model=tiny_llama", "model.dtype=float8"]),
    Case("llm", ["model=tiny_llama", "finetune.rank=0"]),
    Case("llm", ["model=tiny_llama", "finetune=quick"]),
    Case("llm", ["model=tiny_llama", "tasks=sglp_paper", "lm_eval.task_limit=2"]),
    Case("llm", ["model=tiny_llama", "dataset.splits.path=WORK/none.txt"]),
]


def run_cli(args: list[str], cwd: Path = ROOT, timeout: float = 300) -> tuple[int, str, str, float]:
    t0 = time.perf_counter()
    p = subprocess.run([PY, "run.py", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - t0


def bad_inputs(quick: bool) -> list[dict]:
    results = []
    for i, case in enumerate(c for c in CASES if c.quick or not quick):
        with tempfile.TemporaryDirectory(prefix="sglp_fault_") as tmp:
            work = Path(tmp)
            (work / "empty").mkdir()
            if case.setup:
                case.setup(work)
            overrides = [o.replace("WORK", str(work)) for o in case.overrides]
            try:
                rc, _, err, seconds = run_cli(
                    [f"hydra.run.dir={work}/run", f"results_table={work}/runs.csv", "logger=none", *overrides],
                    timeout=120,
                )
            except subprocess.TimeoutExpired:
                rc, err, seconds = -1, "timed out after 120 s", 120.0
        lines = [ln for ln in err.splitlines() if ln.startswith("sglp: error:")]
        ok = rc == 2 and len(lines) == 1 and "Traceback" not in err and seconds <= SECONDS_LIMIT
        message = lines[0][len("sglp: error: ") :] if lines else (err.strip().splitlines() or ["(nothing)"])[-1]
        shown = " ".join(o.replace(str(ROOT) + "/", "") for o in case.overrides)
        results.append(
            {
                "group": case.group,
                "input": shown,
                "exit": rc,
                "lines": len(lines),
                "seconds": seconds,
                "ok": ok,
                "message": message,
            }
        )
        print(f"[{i + 1:2d}] {'ok ' if ok else 'BAD'} exit {rc} {seconds:5.1f}s {shown}: {message[:150]}", flush=True)
    return results


# ---------------------------------------------------------------------------------------------------- kills


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "run.py", *args],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_at(proc: subprocess.Popen, delay: float) -> bool:
    """kill -9 the process group after `delay` seconds; whether it was still running then."""
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def unreadable_files(folder: Path) -> list[str]:
    """Files under `folder` that a reader of their format cannot open (torch, safetensors, JSON, CSV, YAML)."""
    import torch
    import yaml

    bad = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.endswith(".lock"):
            continue
        try:
            if p.suffix == ".pt":
                torch.load(p, map_location="cpu", weights_only=False)
            elif p.suffix == ".safetensors":
                from safetensors.torch import load_file

                load_file(p)
            elif p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix == ".csv" and _check_table(p):
                raise ValueError("ragged rows")
            elif p.suffix in (".yaml", ".yml"):
                yaml.safe_load(p.read_text())
        except Exception as e:  # noqa: BLE001 - any failure to read counts
            bad.append(f"{p.relative_to(folder)} ({type(e).__name__})")
    return bad


def same_weights(a: Path, b: Path) -> bool:
    import torch

    if a.suffix == ".pt":
        sa, sb = (torch.load(p, map_location="cpu", weights_only=False)["state_dict"] for p in (a, b))
    else:
        from safetensors.torch import load_file

        sa, sb = load_file(a), load_file(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def weight_difference(a: Path, b: Path) -> str:
    """How far two checkpoints' trainable weights are apart (BatchNorm running statistics left out)."""
    import torch

    sa, sb = (torch.load(p, map_location="cpu", weights_only=False)["state_dict"] for p in (a, b))
    keys = [k for k in sa if sa[k].is_floating_point() and "running_" not in k]
    diff = torch.cat([(sa[k].double() - sb[k].double()).flatten() for k in keys])
    norm = torch.cat([sa[k].double().flatten() for k in keys]).norm()
    return f"max abs. {float(diff.abs().max()):.3g}, relative L2 {float(diff.norm() / norm):.3g}"


def killed_and_resumed(
    name: str,
    args: list[str],
    out: Path,
    final: Callable[[Path], Path],
    watch: Path,
    kills: int,
    rng: random.Random,
    reference_seconds: float,
) -> dict:
    """Start `args`, kill -9 it at random moments (up to `kills` times), check `watch` after each kill, and run it
    again until it completes."""
    done, killed, bad, attempts = False, 0, [], 0
    while not done and attempts < kills + 3:
        attempts += 1
        proc = start(args)
        if killed < kills and kill_at(proc, rng.uniform(0.15, 0.9) * reference_seconds + 2.0):
            killed += 1
            bad += unreadable_files(watch)
            continue
        proc.wait()
        done = proc.returncode == 0
    return {"job": name, "kills": killed, "unreadable": bad, "completed": done, "final": final(out) if done else None}


def kill_section(work: Path, rng: random.Random, quick: bool) -> list[dict]:
    results = []
    # backbone pretraining: ResNet-20 on Fashion-MNIST, 3 short epochs (state after every epoch)
    pre = [
        "mode=pretrain",
        "model=resnet20",
        "pretrain.epochs=3",
        "pretrain.max_steps_per_epoch=25",
        "threads=1",
        "progress=false",
        "logger=none",
        "overwrite=true",
    ]
    ref = work / "pre_ref/model.pt"
    t0 = time.perf_counter()
    subprocess.run(
        [PY, "run.py", *pre, f"checkpoint={ref}", f"hydra.run.dir={work}/pre_ref_run"],
        cwd=ROOT,
        env=ENV,
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - t0
    if not quick:  # the same command at another thread count: CPU kernels reduce in another order
        other = work / "pre_threads2/model.pt"
        subprocess.run(
            [
                PY,
                "run.py",
                *[a for a in pre if a != "threads=1"],
                "threads=2",
                f"checkpoint={other}",
                f"hydra.run.dir={work}/pre_threads2_run",
            ],
            cwd=ROOT,
            env=ENV,
            check=True,
            capture_output=True,
        )
        results.append(
            {
                "job": "backbone pretraining, threads=2 vs threads=1 (not a kill)",
                "kills": 0,
                "unreadable": [],
                "completed": True,
                "equal": None,
                "difference": weight_difference(ref, other),
            }
        )
        print(f"threads: w(threads=2) - w(threads=1): {results[-1]['difference']}", flush=True)
    for trial in range(1 if quick else 3):
        ck = work / f"pre_{trial}/model.pt"
        r = killed_and_resumed(
            "backbone pretraining",
            [*pre, f"checkpoint={ck}", f"hydra.run.dir={work}/pre_run{trial}"],
            ck,
            lambda p: p,
            ck.parent,
            2,
            rng,
            seconds,
        )
        r["equal"] = r["completed"] and same_weights(ref, ck)
        results.append(r)
        print(
            f"kill: {r['job']} trial {trial}: {r['kills']} kills, equal={r['equal']}, unreadable={r['unreadable']}",
            flush=True,
        )
    if quick:
        return results
    # LM pretraining: the tiny LLaMA for 40 steps (state every eval_every steps)
    lm = [
        "model=tiny_llama",
        "mode=pretrain",
        "pretrain.steps=40",
        "pretrain.eval_every=10",
        "pretrain.eval_batches=2",
        "pretrain.batch_size=4",
        "threads=1",
        "progress=false",
        "logger=none",
        "overwrite=true",
    ]
    t0 = time.perf_counter()
    subprocess.run(
        [PY, "run.py", *lm, f"model.path={work}/lm_ref", f"hydra.run.dir={work}/lm_ref_run"],
        cwd=ROOT,
        env=ENV,
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - t0
    for trial in range(2):
        d = work / f"lm_{trial}"
        r = killed_and_resumed(
            "LM pretraining",
            [*lm, f"model.path={d}", f"hydra.run.dir={work}/lm_run{trial}"],
            d,
            lambda p: p,
            d,
            2,
            rng,
            seconds,
        )
        r["equal"] = r["completed"] and same_weights(work / "lm_ref/model.safetensors", d / "model.safetensors")
        results.append(r)
        print(
            f"kill: {r['job']} trial {trial}: {r['kills']} kills, equal={r['equal']}, unreadable={r['unreadable']}",
            flush=True,
        )
    # a prune job (search, fine-tuning, row write), resumed by skip_existing: exactly one row, equal to the reference
    ref_table = work / "prune_ref.csv"
    t0 = time.perf_counter()
    subprocess.run(
        [PY, "run.py", *SMALL, f"results_table={ref_table}", f"hydra.run.dir={work}/prune_ref"],
        cwd=ROOT,
        env=ENV,
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - t0
    reference = read_table(ref_table)[0]
    for trial in range(3):
        table = work / "tables" / f"prune_{trial}.csv"
        args = [*SMALL, f"results_table={table}", "skip_existing=true", f"hydra.run.dir={work}/prune_run{trial}"]
        r = killed_and_resumed("prune job", args, table, read_table, work / "tables", 2, rng, seconds)
        rows = r["final"] or []
        r["rows"] = len(rows)
        r["equal"] = len(rows) == 1 and same_row(rows[0], reference)
        results.append(r)
        print(f"kill: prune trial {trial}: {r['kills']} kills, rows={r['rows']}, equal={r['equal']}", flush=True)
    # a multirun sweep of three seeds with skip_existing: killed, resumed; three rows, each equal to its reference
    sweep_ref = work / "sweep_ref.csv"
    t0 = time.perf_counter()
    subprocess.run(
        [PY, "run.py", "-m", *SMALL, "seed=0,1,2", f"results_table={sweep_ref}", f"hydra.sweep.dir={work}/sweep_ref"],
        cwd=ROOT,
        env=ENV,
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - t0
    refs = {r["seed"]: r for r in read_table(sweep_ref)}
    table = work / "tables" / "sweep.csv"
    args = ["-m", *SMALL, "seed=0,1,2", f"results_table={table}", "skip_existing=true", f"hydra.sweep.dir={work}/sweep"]
    r = killed_and_resumed("multirun sweep (skip_existing)", args, table, read_table, work / "tables", 3, rng, seconds)
    rows = r["final"] or []
    seeds = [row["seed"] for row in rows]
    r["rows"] = len(rows)
    r["equal"] = sorted(seeds) == ["0", "1", "2"] and all(same_row(row, refs[row["seed"]]) for row in rows)
    results.append(r)
    print(f"kill: sweep: {r['kills']} kills, rows={r['rows']} seeds={sorted(seeds)}, equal={r['equal']}", flush=True)
    return results


def _check_table(table: Path) -> list[str]:
    if not table.exists():
        return []
    rows = list(csv.reader(open(table, newline="")))
    return [f"{table.name} (ragged rows)"] if rows and any(len(r) != len(rows[0]) for r in rows) else []


def read_table(table: Path) -> list[dict]:
    if not table.exists():
        return []
    return list(csv.DictReader(open(table, newline="")))


DETERMINISTIC = (
    "method",
    "seed",
    "config_key",
    "segments",
    "kept",
    "removed",
    "dense_acc",
    "pruned_acc_before_ft",
    "pruned_acc",
    "macs_pruned",
    "params_pruned",
    "search_space",
    "search_evaluated",
)


def same_row(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in DETERMINISTIC)


# ---------------------------------------------------------------------------------------------------- races

APPENDER = """
import sys, time
from sglp.experiment.report import append_row
table, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    row = {"config_key": f"{who}-{i}", "who": who, "i": i, "payload": "x" * 3000}
    if i % 3 == 0:
        row[f"col_{who}_{i}"] = i  # a new column: the header is rewritten
    append_row(row, table)
    print(f"ok {who}-{i}", flush=True)
"""


def race_section(work: Path, rng: random.Random, quick: bool) -> list[dict]:
    table = work / "race.csv"
    writers, n = (4, 15) if quick else (8, 40)
    procs = [
        subprocess.Popen(
            [PY, "-c", APPENDER, str(table), f"w{w}", str(n)],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for w in range(writers)
    ]
    victims = rng.sample(range(writers), writers // 2)
    time.sleep(rng.uniform(1.0, 3.0))
    for v in victims:
        time.sleep(rng.uniform(0.0, 0.5))
        if procs[v].poll() is None:
            os.killpg(procs[v].pid, signal.SIGKILL)
    acknowledged = set()
    for p in procs:
        out, _ = p.communicate()
        acknowledged |= {ln.split()[1] for ln in out.splitlines() if ln.startswith("ok ")}
    rows = read_table(table)
    keys = [r["config_key"] for r in rows]
    result = {
        "job": f"{writers} writers appending {n} rows each (new columns every third row), {len(victims)} "
        "killed at random moments",
        "kills": len(victims),
        "unreadable": _check_table(table),
        "rows": len(rows),
        "lost": len(acknowledged - set(keys)),
        "duplicated": len(keys) - len(set(keys)),
        "torn": sum(1 for r in rows if r.get("payload") not in ("x" * 3000,)),
    }
    print(f"race: {result}", flush=True)
    results = [result]
    # two identical skip_existing jobs started together: one row
    twin = work / "twins.csv"
    args = [*SMALL, f"results_table={twin}", "skip_existing=true"]
    ps = [
        subprocess.Popen(
            [PY, "run.py", *args, f"hydra.run.dir={work}/twin{i}"],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(2)
    ]
    codes = [p.wait() for p in ps]
    rows = read_table(twin)
    twin_result = {
        "job": "two identical skip_existing jobs started together",
        "kills": 0,
        "unreadable": _check_table(twin),
        "rows": len(rows),
        "lost": int(len(rows) < 1),
        "duplicated": max(0, len(rows) - 1),
        "torn": 0,
        "exit codes": codes,
    }
    print(f"race: {twin_result}", flush=True)
    return results + [twin_result]


# ---------------------------------------------------------------------------------------------------- report


def render(bad: list[dict], kills: list[dict], races: list[dict], command: str, where: str) -> str:
    lines = ["# Faults and bad input", "", f"Made by `{command}`. Where it ran: {where}.", ""]
    if bad:
        n_ok = sum(r["ok"] for r in bad)
        slowest = max(r["seconds"] for r in bad)
        lines += [
            f"## Bad input: {n_ok} of {len(bad)} answered with exit 2 and one `sglp: error:` line "
            f"(slowest {slowest:.1f} s; limit {SECONDS_LIMIT:.0f} s)",
            "",
            "| # | group | input | exit | seconds | the message |",
            "|---|---|---|---|---|---|",
        ]
        for i, r in enumerate(bad, 1):
            mark = "" if r["ok"] else " **(not ok)**"
            msg = r["message"].replace("|", "\\|")
            inp = r["input"].replace("|", "\\|")
            lines.append(f"| {i} | {r['group']} | `{inp}` | {r['exit']}{mark} | {r['seconds']:.1f} | {msg} |")
        lines.append("")
    if kills:
        lines += [
            "## kill -9 at random moments, then the same command again",
            "",
            "| job | kills | unreadable files after a kill | completed | rows | equal to an uninterrupted run |",
            "|---|---|---|---|---|---|",
        ]
        for r in kills:
            if r["equal"] is None:
                lines.append(f"| {r['job']} | – | – | – | – | no: weights differ ({r['difference']}) |")
                continue
            lines.append(
                f"| {r['job']} | {r['kills']} | {len(r['unreadable'])} {r['unreadable'] or ''} | "
                f"{r['completed']} | {r.get('rows', '–')} | {r['equal']} |"
            )
        lines.append("")
    if races:
        lines += [
            "## Concurrent writers",
            "",
            "| job | kills | unreadable | rows | lost | duplicated | torn |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in races:
            lines.append(
                f"| {r['job']} | {r['kills']} | {len(r['unreadable'])} | {r['rows']} | {r['lost']} | "
                f"{r['duplicated']} | {r['torn']} |"
            )
        lines.append("")
    return "\n".join(lines)


def failures(bad: list[dict], kills: list[dict], races: list[dict]) -> list[str]:
    out = [f"bad input not answered properly: {r['input']}" for r in bad if not r["ok"]]
    out += [f"{r['job']}: unreadable {r['unreadable']}" for r in kills + races if r["unreadable"]]
    out += [f"{r['job']}: not equal to an uninterrupted run" for r in kills if r["equal"] is False]
    out += [
        f"{r['job']}: lost {r['lost']} duplicated {r['duplicated']} torn {r['torn']}"
        for r in races
        if r["lost"] or r["duplicated"] or r["torn"]
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["bad", "kill", "race"])
    ap.add_argument("--quick", action="store_true", help="a short subset of every section")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--out", type=Path, help="Markdown report (results/faults.md)")
    args = ap.parse_args(argv)
    from sglp.core.provenance import provenance

    rng = random.Random(args.seed)
    start = provenance("start")
    with tempfile.TemporaryDirectory(prefix="sglp_faults_") as tmp:
        work = Path(tmp)
        (work / "tables").mkdir()
        bad = bad_inputs(args.quick) if args.only in (None, "bad") else []
        kills = kill_section(work, rng, args.quick) if args.only in (None, "kill") else []
        races = race_section(work, rng, args.quick) if args.only in (None, "race") else []
    command = "python tests/faults.py " + " ".join(a for a in (argv or sys.argv[1:]))
    from sglp.experiment.report import portable_text

    end = provenance("end")
    where = (f"{start['cpu']}, {start['cpu_count']} cores, {start['threads']} torch threads; load average "
             f"{start['load_start']:.2f} at the start, {end['load_end']:.2f} at the end; {start['start_utc']} to "
             f"{end['end_utc']}")  # fmt: skip
    report = portable_text(render(bad, kills, races, command.strip(), where), ROOT)  # no machine paths in the page
    report = re.sub(re.escape(tempfile.gettempdir()) + r"/sglp_faults?_\w+", "WORK", report)  # nor scratch folders
    if args.out:
        args.out.write_text(report)
    print(report)
    problems = failures(bad, kills, races)
    for p in problems:
        print(f"FAULT: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
