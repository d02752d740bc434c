"""Bad input and faults: each check that turns a mistake into one `sglp: error:` line, the atomic table write,
and a short run of tests/faults.py (the full run, `python tests/faults.py`, is marked slow)."""

import gzip
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch

from sglp.core.errors import CheckpointError, DataNotFoundError, InvalidArgument, UnsupportedModelError
from sglp.data.batches import split_calibration
from sglp.data.fashion_mnist import read_idx

ROOT = Path(__file__).resolve().parents[1]
TINY_LLAMA = ROOT / "checkpoints/tiny_llama_kjv"


def load_script(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_py():
    return load_script("run_py", ROOT / "run.py")


@pytest.fixture(scope="module")
def faults():
    return load_script("faults", ROOT / "tests" / "faults.py")


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["model=resnet999"], "resnet999"),
        (["scorer=gradnorm2", "seed=1"], "gradnorm2"),
        (["segmenter.kk=3"], "segmenter.kk"),
        (["-m", "method=sglp,sglp_typo", "seed=0,1"], "sglp_typo"),  # a bad value inside a sweep
        (["finetune.lr=[1,"], "finetune.lr"),  # not parseable
    ],
)
def test_the_command_line_is_composed_before_hydra_runs_it(run_py, argv, fragment):
    message = run_py.check_command_line(argv, run_py.CONFIGS)
    assert message is not None and fragment in message and "\n" not in message


@pytest.mark.parametrize(
    "argv",
    [["model=resnet20", "search.keep=5"], ["-m", "method=sglp,random", "seed=0,1", "hydra.sweep.dir=/tmp/x"],
     ["--cfg", "job", "model=whatever"], ["model=tiny_llama", "+model.layers_path=model.layers"], []],
)  # fmt: skip
def test_valid_command_lines_and_hydras_own_modes_pass(run_py, argv):
    assert run_py.check_command_line(argv, run_py.CONFIGS) is None


def test_damaged_idx_files_are_data_errors(tmp_path):
    good = tmp_path / "good-idx1-ubyte.gz"
    with gzip.open(good, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4]))
    assert read_idx(good).tolist() == [1, 2, 3, 4]
    garbage = tmp_path / "garbage-idx1-ubyte.gz"
    garbage.write_bytes(b"\x00" * 7 + b"not gzip")
    truncated = tmp_path / "truncated-idx1-ubyte.gz"
    truncated.write_bytes(good.read_bytes()[:15])
    wrong_type = tmp_path / "wrong-idx1-ubyte"
    wrong_type.write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 9]))
    for path in (garbage, truncated, wrong_type):
        with pytest.raises(DataNotFoundError, match="fetch the data again"):
            read_idx(path)


@pytest.mark.parametrize("size", [-5, 0, 10, 11])
def test_impossible_calibration_sizes_name_the_key(size):
    images, labels = torch.zeros(10, 1, 2, 2), torch.arange(10)
    with pytest.raises(InvalidArgument, match=f"dataset.splits.calib_size={size}"):
        split_calibration(images, labels, size)


@pytest.fixture
def llm_copy(tmp_path):
    out = tmp_path / "llm"
    shutil.copytree(TINY_LLAMA, out)
    return out


@pytest.mark.parametrize("damage", ["tokenizer.json", "model.safetensors", "config.json"])
def test_a_damaged_model_folder_is_a_checkpoint_error(llm_copy, damage):
    from sglp.kinds.causal_lm.models import load_causal_lm

    (llm_copy / damage).write_bytes(b"][" if damage != "model.safetensors" else (llm_copy / damage).read_bytes()[:999])
    with pytest.raises(CheckpointError, match="cannot load"):
        load_causal_lm(str(llm_copy), "float32")


def test_a_wrong_layers_path_fails_at_load_and_a_right_one_is_used_everywhere(llm_copy):
    from sglp.kinds.base import NoFinetuning
    from sglp.kinds.causal_lm.layers import decoder_layers
    from sglp.kinds.causal_lm.task import CausalLMTask

    def task(layers_path):
        return CausalLMTask(str(llm_copy), lambda encode: None, NoFinetuning(), layers_path=layers_path)

    with pytest.raises(UnsupportedModelError, match="model.blocks"):
        task("model.blocks").load_model()
    model = task("model.layers").load_model()
    assert model.sglp_layers_path == "model.layers" and decoder_layers(model)[0] == "model.layers"
    model.sglp_layers_path = "model.nowhere"  # every later stage reads it: a wrong one would fail there too
    with pytest.raises(UnsupportedModelError, match="model.nowhere"):
        decoder_layers(model)


def test_a_scorer_of_another_kind_is_refused_before_any_data(run_py):
    from sglp.core.segmentation import UniformSegmenter
    from sglp.methods.scorers.perplexity import PerplexityScorer
    from sglp.methods.search import SegmentSearch
    from sglp.methods.strategy import SegmentedPruning

    strategy = SegmentedPruning(None, UniformSegmenter(k=1), SegmentSearch(keep=2), PerplexityScorer())
    with pytest.raises(InvalidArgument, match="not this classification model"):
        strategy.check_kind("classification")
    strategy.check_kind("causal_lm")


def test_table_writes_are_atomic_renames(tmp_path, monkeypatch):
    """A writer killed mid-write leaves the old table: the new one is written elsewhere and renamed over it."""
    import os

    from sglp.experiment.report import append_row

    table = tmp_path / "runs.csv"
    append_row({"config_key": "a", "x": 1}, table)
    before = table.read_text()
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt("killed before rename")))
    with pytest.raises(KeyboardInterrupt):
        append_row({"config_key": "b", "x": 2}, table)
    assert table.read_text() == before


@pytest.mark.slow  # ~60 s; the bad-input checks of every component also run in test_run / test_configs
def test_quick_faults_bad_input_and_races(faults, tmp_path):
    """A short run of tests/faults.py: its quick bad inputs and racing writers (the slow test runs it all)."""
    out = tmp_path / "faults.md"
    assert faults.main(["--quick", "--only", "bad", "--out", str(out)]) == 0
    assert "answered with exit 2" in out.read_text()
    races = faults.race_section(tmp_path, __import__("random").Random(0), quick=True)
    assert races[0]["kills"] and not faults.failures([], [], races)


@pytest.mark.slow
def test_full_fault_suite(faults, tmp_path):
    assert faults.main(["--out", str(tmp_path / "faults.md")]) == 0
