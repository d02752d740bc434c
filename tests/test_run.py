"""run.py end to end on a tiny configuration, and its error messages for bad input."""

import csv
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import read_wandb_offline_run

from sglp.core.checkpoint import load_pruned
from sglp.kinds.classification.models.resnet_cifar import resnet20

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "model=resnet20",
    "segmenter.k=2",
    "search.keep=5",
    "scorer.batch_size=16",
    "calibration.batch_size=32",
    "calibration.num_batches=1",
    "eval_max_batches=1",
    "finetune.max_steps_per_epoch=2",
    "latency.batch_sizes=[1,4]",
    "latency.min_run_time=0.05",
    "progress=false",
    "threads=2",
]


def run(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [
            sys.executable,
            "run.py",
            *[o for o in overrides if o.startswith("-")],  # flags such as -m go before the overrides
            f"hydra.run.dir={tmp_path}/run",
            f"results_table={tmp_path}/runs.csv",
            *[o for o in overrides if not o.startswith("-")],
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ckpt")
    ckpt = tmp / "resnet20" / "model.pt"
    res = run(
        tmp,
        "mode=pretrain",
        "model=resnet20",
        "pretrain.epochs=1",
        "pretrain.max_steps_per_epoch=3",
        f"checkpoint={ckpt}",
        "logger=none",
        "progress=false",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (ckpt.parent / "train_log.csv").exists() and (ckpt.parent / "config.yaml").exists()
    assert not (ckpt.parent / "train_state.pt").exists()
    return ckpt


def test_the_same_pretraining_command_in_another_process_gives_bit_identical_weights(tmp_path, tiny_checkpoint):
    """The model is built after the seed is set (its initial weights are drawn there): the fixture's command,
    repeated in a new process, gives the same weights bit for bit (same machine, same thread count)."""
    again = tmp_path / "again" / "model.pt"
    res = run(tmp_path, "mode=pretrain", "model=resnet20", "pretrain.epochs=1", "pretrain.max_steps_per_epoch=3",
              f"checkpoint={again}", "logger=none", "progress=false")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    first = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    second = torch.load(again, map_location="cpu", weights_only=False)["state_dict"]
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_end_to_end_row_table_model_and_wandb(tmp_path, tiny_checkpoint):
    res = run(tmp_path, *TINY, f"checkpoint={tiny_checkpoint}", "logger=wandb", "logger.log_model=true", "name=wbtest")
    assert res.returncode == 0, res.stderr[-3000:]
    run_dir = tmp_path / "run"
    row = json.loads((run_dir / "row.json").read_text())
    assert row["units_total"] == 9 and row["units_kept"] == 5 and len(row["removed"]) == 4
    assert sorted(row["kept"] + row["removed"]) == list(range(9))
    assert [u for s in row["segments"] for u in s] == list(range(9)) and len(row["segments"]) == 2
    assert row["params_pruned"] < row["params_dense"] and 0 < row["params_reduction_pct"] < 100
    assert row["flops_reduction_pct"] == pytest.approx(row["macs_reduction_pct"])
    for key in (
        "dense_acc",
        "pruned_acc_before_ft",
        "pruned_acc",
        "latency_ms_dense_bs1",
        "latency_ms_pruned_bs4",
        "latency_reduction_pct_bs4",
        "search_space",
        "search_seconds",
        "seconds_similarity",
        "git_commit",
    ):
        assert key in row
    assert "sglp result" in res.stdout  # the row is printed
    with open(tmp_path / "runs.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 1 and json.loads(table[0]["removed"]) == row["removed"]
    assert (run_dir / "cka.npy").exists() and (run_dir / "cka_segments.png").exists()
    # the offline W&B run, read back from its file: one run per row, grouped by the table, paper column names
    (wandb_file,) = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    logged = read_wandb_offline_run(wandb_file)
    assert logged["run"].run_group == "wbtest"
    assert {"prune", "resnet20", "fashion_mnist", "table:wbtest", row["method"]} <= set(logged["run"].tags)
    assert logged["config"]["git_commit"] == row["git_commit"] and logged["config"]["model"]["name"] == "resnet20"
    assert logged["summary"]["pruned_acc"] == pytest.approx(row["pruned_acc"])
    assert logged["summary"]["paper/Acc. (%)"] == pytest.approx(row["pruned_acc"])
    assert logged["summary"]["paper/FLOPs (%)"] == pytest.approx(row["macs_reduction_pct"])
    assert logged["summary"]["paper/Params. (%)"] == pytest.approx(row["params_reduction_pct"])
    images = {Path(f).name.split("_")[0] + "_" + Path(f).name.split("_")[1] for f in logged["files"] if "media" in f}
    assert {"cka_segments", "kept_units"} <= images
    assert "artifact" in logged["kinds"]  # the pruned model (logger.log_model=true)
    assert (run_dir / "kept_units.png").exists()
    # the saved pruned model loads back with the recorded structure
    pruned = load_pruned(resnet20(10, 1), run_dir / "pruned_model.pt")
    assert sum(p.numel() for p in pruned.parameters()) == row["params_pruned"]
    assert pruned(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # and through the entry point: the same test accuracy as the prune run recorded
    res = run(
        tmp_path / "eval",
        "mode=evaluate",
        "model=resnet20",
        f"pruned_model={run_dir}/pruned_model.pt",
        "eval_max_batches=1",
        "logger=none",
        "progress=false",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"test accuracy {row['pruned_acc']:.2f} %" in res.stdout


@pytest.mark.parametrize(
    "override,message",
    [
        ("segmenter.k=0", "segmenter.k=0 is invalid"),
        ("segmenter.k=12", "segmenter.k=12 is invalid"),
        ("search.keep=12", "search.keep=12 is impossible"),
        ("search.keep=0", "search.keep=0 is impossible"),
        ("search.keep=1", "lower segmenter.k"),
        # options each component checks when it is built, before any data or model is loaded
        ("finetune.lr=-1", "finetune.lr=-1 must be a number > 0"),
        ("finetune.schedule=bogus", "finetune.schedule='bogus': choose one of cosine, multistep, constant"),
        ("finetune.epochs=-1", "finetune.epochs=-1 must be an integer >= 0"),
        ("eval_batch_size=0", "eval_batch_size=0 must be an integer >= 1"),
        ("scorer.batch_size=0", "scorer.batch_size=0 must be an integer >= 1"),
        ("latency.batch_sizes=[0]", "latency.batch_sizes entry=0 must be an integer >= 1"),
        ("finetune=lora", "finetune is a LoRAConfig, which ClassificationTask cannot run"),
        ("results_table=/proc/sglp/runs.csv", "results_table=/proc/sglp/runs.csv cannot be written"),
        ("dense_cache=/proc/sglp/cache", "dense_cache=/proc/sglp/cache cannot be written"),
        ("search_journal=/proc/sglp/journal", "search_journal=/proc/sglp/journal cannot be written"),
        ("matched_controls=[bogus]", "matched_controls=['bogus']: choose each at most once"),
    ],
)
def test_bad_settings_end_in_one_clear_message(tmp_path, tiny_checkpoint, override, message):
    res = run(tmp_path, *[o for o in TINY if not o.startswith(override.split("=")[0])], f"checkpoint={tiny_checkpoint}",
              "logger=none", override)  # fmt: skip
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.count("sglp: error:") == 1


def test_missing_and_corrupt_checkpoint(tmp_path):
    table = tmp_path / "runs.csv"
    table.write_text("method,pruned_acc\nearlier,90.0\n")
    res = run(tmp_path, *TINY, f"checkpoint={tmp_path}/none.pt", "logger=none")
    assert res.returncode == 2 and "mode=pretrain" in res.stderr and "Traceback" not in res.stderr
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    res = run(tmp_path, *TINY, f"checkpoint={bad}", "logger=none")
    assert res.returncode == 2 and "corrupt" in res.stderr and "Traceback" not in res.stderr
    assert table.read_text() == "method,pruned_acc\nearlier,90.0\n"  # nothing already written is lost


def test_a_seed_without_a_backbone_is_one_clear_message(tmp_path):
    """experiment=verdicts picks backbone s for seed s (`${pick:${backbones},${seed}}`): seed 3 of 3 has none."""
    res = run(tmp_path, "experiment=verdicts", "seed=3", "logger=none", "dry_run=true")
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stderr.count("sglp: error:") == 1
    assert "checkpoint: no entry 3 among 3" in res.stderr and "choose 0..2" in res.stderr


def test_missing_data_is_one_clear_message(tmp_path):
    res = run(
        tmp_path,
        *TINY,
        "logger=none",
        f"dataset.splits.path={tmp_path}/empty",
        "dataset.splits.search_system=false",
        "dataset.splits.download=false",
    )
    assert res.returncode == 2 and "Fashion-MNIST not found" in res.stderr and "Traceback" not in res.stderr


def test_pretrain_refuses_to_overwrite_and_unknown_mode(tmp_path, tiny_checkpoint):
    before = tiny_checkpoint.read_bytes()
    res = run(tmp_path, "mode=pretrain", "model=resnet20", f"checkpoint={tiny_checkpoint}", "logger=none")
    assert res.returncode == 2 and "overwrite=true" in res.stderr and "Traceback" not in res.stderr
    assert tiny_checkpoint.read_bytes() == before
    res = run(tmp_path, "mode=prnue", "logger=none")
    assert res.returncode == 2 and "mode='prnue'" in res.stderr


def test_unknown_option_is_hydras_message(tmp_path):
    res = run(tmp_path, "model=resnet999")
    assert res.returncode != 0 and "resnet999" in res.stderr and "Traceback" not in res.stderr


def tiny_dataset_run(tmp_path: Path, dataset: str, batch: int, *overrides: str, model: str = "resnet20") -> dict:
    """run.py on a tiny dataset: pretrain a 9-unit model in place, prune 9 -> 6 units; returns the row."""
    res = run(
        tmp_path,
        f"dataset={dataset}",
        f"model={model}",
        "pretrain_if_missing=true",
        "pretrain.epochs=1",
        f"pretrain.batch_size={batch}",
        f"checkpoint={tmp_path}/ckpt/model.pt",
        f"calibration.batch_size={batch}",
        "calibration.num_batches=1",
        f"scorer.batch_size={batch}",
        f"finetune.batch_size={batch}",
        "finetune.max_steps_per_epoch=2",
        f"eval_batch_size={batch}",
        "segmenter.k=2",
        "search.keep=6",
        "latency.batch_sizes=[1]",
        "latency.min_run_time=0.05",
        "logger=none",
        "progress=false",
        *overrides,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    row = json.loads((tmp_path / "run" / "row.json").read_text())
    assert row["dataset"] == dataset and row["units_kept"] == 6 and row["flops_dense"] > 0
    return row


def test_cifar10_end_to_end_on_tiny_files(tmp_path):
    from test_cifar import write_cifar

    write_cifar(tmp_path / "data", 10, per_file=16)
    tiny_dataset_run(
        tmp_path,
        "cifar10",
        8,
        f"dataset.splits.path={tmp_path}/data",
        "dataset.splits.calib_size=16",
        "dataset.splits.download=false",
    )


def test_image_folder_end_to_end(tmp_path):
    from test_image_folder import write_tree

    write_tree(tmp_path / "data" / "imagenette2")
    tiny_dataset_run(
        tmp_path,
        "imagenette2",
        6,
        f"paths.data={tmp_path}/data",
        "dataset.splits.image_size=32",
        "dataset.splits.resize=36",
        "dataset.splits.calib_size=6",
        "dataset.splits.workers=0",
    )


def test_cnn1d_on_rml2016_end_to_end_on_a_tiny_pickle(tmp_path):
    from test_radio import write_rml2016

    write_rml2016(tmp_path / "data" / "rml2016.10a" / "RML2016.10a_dict.pkl", per_key=8)
    row = tiny_dataset_run(
        tmp_path,
        "rml2016_10a",
        8,
        f"paths.data={tmp_path}/data",
        "dataset.splits.calib_size=16",
        "scorer=taylor",
        model="cnn1d",
    )
    assert row["model"] == "cnn1d" and row["params_pruned"] < row["params_dense"]


@pytest.mark.slow  # ~75 s: every method in a joblib sweep
def test_every_method_runs_in_a_parallel_sweep_with_a_summary(tmp_path, tiny_checkpoint):
    """Every vision method yaml in one multirun on the joblib launcher (2 processes appending to one table): a new
    method is tested without writing a test, and parallel appends lose or duplicate no row. No `threads=`: each of
    the launcher's 2 jobs takes half the cores by default (no oversubscription)."""
    from omegaconf import OmegaConf

    methods = sorted(p.stem for p in (ROOT / "configs" / "method").glob("*.yaml") if not p.stem.endswith("_llm"))
    tiny = [o for o in TINY if not o.startswith(("scorer.", "segmenter.", "threads", "search.keep"))]  # methods' own
    tiny.append("search.keep=6")  # SGLP (paper)'s k=6 keeps at least one unit per segment
    res = run(tmp_path, "-m", f"hydra.sweep.dir={tmp_path}/multi", *tiny, f"checkpoint={tiny_checkpoint}",
              "logger=none", "save_pruned_model=false", "hydra/launcher=parallel",
              f"method={','.join(methods)}")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "runs.csv")))
    labels = {m: OmegaConf.load(ROOT / "configs" / "method" / f"{m}.yaml").label for m in methods}
    assert sorted(r["method"] for r in rows) == sorted(labels.values())
    assert len({r["config_key"] for r in rows}) == len(methods)
    for r in rows:
        kept = int(r["units_kept"])  # the target, or the depth a method that picks its own chose (recorded so)
        assert (kept == 6 if r["units_kept_target"] else 1 <= kept <= 9) and len(json.loads(r["removed"])) == 9 - kept
        assert float(r["params_pruned"]) < float(r["params_dense"]) or kept == 9  # the literal search may keep all
        assert float(r["seconds_prune"]) > 0
        assert labels[json.loads(r["options"])["method"]] == r["method"]
        assert r["threads"] == str(max(1, (os.cpu_count() or 1) // 2))
    summary = (tmp_path / "multi" / "sweep_summary.md").read_text()
    assert all(f"| {labels[m]} |" in summary for m in methods) and (tmp_path / "multi" / "sweep_summary.png").exists()


def test_every_scorer_without_a_method_runs_end_to_end(tmp_path, tiny_checkpoint):
    """The scorer yamls no method uses, in one multirun (the others run in the method sweep above)."""
    used = {line.split(":", 1)[1].strip() for p in (ROOT / "configs" / "method").glob("*.yaml")
            for line in p.read_text().splitlines() if line.startswith("  - override /scorer:")}  # fmt: skip
    scorers = sorted(  # the vision ones (LLM scorers run in test_llm_run)
        p.stem
        for p in (ROOT / "configs" / "scorer").glob("*.yaml")
        if "sglp.kinds.causal_lm." not in p.read_text() and p.stem not in used
    )
    assert scorers, "every scorer has a method: test it there"
    res = run(
        tmp_path,
        "-m",
        f"hydra.sweep.dir={tmp_path}/multi",
        *[o for o in TINY if not o.startswith("scorer.")],  # not every scorer reads batches
        f"checkpoint={tiny_checkpoint}",
        "logger=none",
        "save_pruned_model=false",
        f"scorer={','.join(scorers)}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert [r["method"] for r in rows] == [f"segmented/fisher/{s}" for s in scorers]
    for r in rows:
        assert r["units_kept"] == "5" and float(r["params_pruned"]) < float(r["params_dense"])


def test_skip_existing_skips_a_run_already_in_the_table(tmp_path, tiny_checkpoint):
    tiny = [o for o in TINY if not o.startswith("scorer.")]  # magnitude criteria read no batches
    args = [*tiny, f"checkpoint={tiny_checkpoint}", "logger=none", "save_pruned_model=false", "skip_existing=true"]
    first = run(tmp_path, *args, "strategy=one_shot", "scorer=l2")
    assert first.returncode == 0, first.stderr[-3000:]
    again_dir = tmp_path / "again"
    again = run(tmp_path, *args, "strategy=one_shot", "scorer=l2", "progress=true",  # display settings do not count
                f"hydra.run.dir={again_dir}")  # fmt: skip
    assert again.returncode == 0 and "skipped" in again.stdout
    skipped_row = json.loads((again_dir / "row.json").read_text())  # the skipped job's own folder holds the row
    assert skipped_row["config_key"] == list(csv.DictReader(open(tmp_path / "runs.csv")))[0]["config_key"]
    other = run(tmp_path, *args, "strategy=one_shot", "scorer=l1")
    assert other.returncode == 0 and "skipped" not in other.stdout
    rows = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert [r["method"] for r in rows] == ["one-shot/l2", "one-shot/l1"]
    assert rows[0]["config_key"] != rows[1]["config_key"]


def test_matched_controls_share_the_methods_segments_and_counts_and_resume(tmp_path, tiny_checkpoint):
    """matched_controls: one row per control beside the method's row, built from its segments and counts; a rerun
    with a control row missing computes only that control (the method's row is not run or written again)."""
    args = [*TINY, f"checkpoint={tiny_checkpoint}", "logger=none", "save_pruned_model=false", "skip_existing=true",
            "matched_controls=[in_segments,same_depth]", "method=sglp"]  # fmt: skip
    first = run(tmp_path, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    table = tmp_path / "runs.csv"
    method, in_seg, same = list(csv.DictReader(open(table)))
    assert (
        in_seg["config_key"] == method["config_key"] + "+in_segments" and in_seg["control_of"] == method["config_key"]
    )
    assert in_seg["method"] == "SGLP (repo defaults) · random in its segments"
    assert same["method"] == "SGLP (repo defaults) · random, same depth"
    segments = json.loads(method["segments"])
    assert json.loads(in_seg["segments"]) == segments
    counts = [[sum(u in json.loads(r["kept"]) for u in s) for s in segments] for r in (method, in_seg)]
    assert counts[0] == counts[1]
    assert len(json.loads(same["kept"])) == len(json.loads(method["kept"])) == int(same["units_kept"])
    for r in (method, in_seg, same):
        assert r["seed"] == "0" and r["pruned_acc"] and r["macs_reduction_pct"]
        assert r["cpu"] and r["threads"] == "2" and r["start_utc"] and r["load_end"]
    again = run(tmp_path, *args, f"hydra.run.dir={tmp_path}/again")
    assert again.returncode == 0 and "skipped" in again.stdout
    alone = run(tmp_path, *[a for a in args if not a.startswith("matched_controls")], f"hydra.run.dir={tmp_path}/alone")
    assert alone.returncode == 0 and "skipped" in alone.stdout  # the controls asked for leave the method's key as is
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(table, "w", newline="") as f:  # lose the last control's row: a rerun makes only that one
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows[:2])
    resumed = run(tmp_path, *args, f"hydra.run.dir={tmp_path}/resumed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = list(csv.DictReader(open(table)))
    assert [r["config_key"] for r in after] == [r["config_key"] for r in rows]
    assert after[2]["kept"] == same["kept"] and after[2]["pruned_acc"] == same["pruned_acc"]
    done = tmp_path / "resumed"
    assert (done / "control_same_depth" / "row.json").exists() and not (done / "control_in_segments").exists()
    assert not (done / "search_scores.json").exists(), "the method itself is not run again"
