"""`model=timm model.name=<timm name>`: any timm classifier in the Hydra job, its preprocessing from timm's own data
config; the pre-flight builds the real network, the rehearsal runs the job end to end (random weights, offline)."""

import csv

import pytest
from helpers import compose_with
from omegaconf import OmegaConf
from test_run import run

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("name", ["vit_tiny_patch16_384", "resnet50.a1_in1k", "convnext_atto"])
def test_an_image_folder_dataset_takes_the_models_preprocessing_from_timm(name):
    """Reference: timm's data config resolved from the built model (a second path through timm)."""
    reference = timm.data.resolve_model_data_config(timm.create_model(name, pretrained=False))
    splits = OmegaConf.to_container(
        compose_with("model=timm", f"model.name={name}", "dataset=imagenette2").dataset, resolve=True
    )
    side = reference["input_size"][-1]
    assert splits["input_shape"] == [3, side, side]
    s = splits["splits"]
    assert (s["image_size"], s["interpolation"]) == (side, reference["interpolation"])
    assert s["resize"] == int(side / reference["crop_pct"])
    assert tuple(s["mean"]) == tuple(reference["mean"]) and tuple(s["std"]) == tuple(reference["std"])


def test_other_models_keep_the_torchvision_preprocessing():
    s = OmegaConf.to_container(compose_with("model=resnet50", "dataset=imagenette2").dataset.splits, resolve=True)
    assert (s["image_size"], s["resize"], s["mean"], s["interpolation"]) == (224, 256, None, "bilinear")


def test_dry_run_builds_the_real_timm_network(tmp_path):
    res = run(tmp_path, "model=timm", "model.name=convnext_atto", "dataset=imagenette2", "search.keep=8",
              "dry_run=true", "threads=1", "logger=none")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    params = sum(p.numel() for p in timm.create_model("convnext_atto", num_classes=10).parameters())
    assert f"ConvNeXt, {params:,} parameters" in res.stdout and "ConvNeXt: 12 prunable units" in res.stdout


def test_rehearsal_runs_a_timm_job_end_to_end(tmp_path):
    res = run(tmp_path, "model=timm", "model.name=resnet18", "model.net.pretrained=true", "dataset=imagenette2",
              "search.keep=3", "rehearse=true", f"rehearsal_dir={tmp_path}/rehearsal", "threads=1", "logger=none",
              "progress=false")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    (row,) = csv.DictReader(open(next((tmp_path / "rehearsal" / "rows").glob("*.csv"))))
    assert (row["model"], row["units_kept"], row["units_total"], row["rehearsal"]) == ("resnet18", "3", "5", "True")


def test_a_timm_model_trains_on_the_committed_grey_dataset_shape(tmp_path):
    """Fashion-MNIST's one channel and 28 x 28: timm builds the first conv for it (in_chans)."""
    res = run(tmp_path, "model=timm", "model.name=resnet18", "search.keep=3", "dry_run=true", "threads=1",
              "logger=none")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "5 prunable units" in res.stdout


def test_a_wrong_timm_name_and_a_missing_one_are_one_clear_message(tmp_path):
    res = run(tmp_path, "model=timm", "model.name=convnext_attoo", "dataset=imagenette2", "dry_run=true", "logger=none")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("sglp: error: ")
    assert "model.name='convnext_attoo' is not a timm model (close: convnext_atto" in line
    res = run(tmp_path, "model=timm", "dry_run=true", "logger=none")
    assert res.returncode == 2 and "sglp: error: model.name has no value" in res.stderr
