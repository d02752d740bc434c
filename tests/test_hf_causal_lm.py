"""`model=hf_causal_lm model.path=<folder or hub id>`: any decoder family by name, its architecture read from its own
config.json for the pre-flight and the rehearsal. Parametrised over families the configs do not name (add a family
to FAMILIES and it is tested)."""

import csv

import pytest
import torch
from test_run import run

from sglp.kinds.causal_lm.models import causal_lm_from_config, pretrained_config

# model_type -> its config fields at a tiny size (4 decoder layers); names as each family spells them
FAMILIES = {
    "qwen2": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 128},
    "gpt2": {"n_embd": 32, "n_layer": 4, "n_head": 4, "n_positions": 128},
    "mistral": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
                "num_key_value_heads": 1, "max_position_embeddings": 128, "sliding_window": None},
}  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A saved model folder (config.json, random weights, a byte-level BPE tokenizer) per family."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from sglp.kinds.causal_lm.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("hf")
    tokenizer = train_tokenizer("In the beginning God created the heaven and the earth. " * 200, 300)
    out = {}
    for family, fields in FAMILIES.items():
        config = AutoConfig.for_model(family, vocab_size=len(tokenizer), **fields)
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(root / family)
        tokenizer.save_pretrained(root / family)
        out[family] = root / family
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_architecture_comes_from_the_folders_config(folders, family):
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(folders[family])
    with torch.device("meta"):
        built = causal_lm_from_config(str(folders[family]))
    assert type(built) is type(saved) and pretrained_config(str(folders[family])).model_type == family
    assert sum(p.numel() for p in built.parameters()) == sum(p.numel() for p in saved.parameters())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_dry_run_builds_the_real_architecture(tmp_path, folders, family):
    res = run(tmp_path, "model=hf_causal_lm", f"model.path={folders[family]}", "search.keep=3", "dry_run=true",
              "threads=1", "logger=none")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "4 prunable units" in res.stdout


@pytest.mark.parametrize("family", ["qwen2", pytest.param("gpt2", marks=pytest.mark.slow)])
def test_rehearsal_runs_the_job_end_to_end_at_a_tiny_width(tmp_path, folders, family):
    res = run(tmp_path, "model=hf_causal_lm", f"model.path={folders[family]}", "search.keep=3", "rehearse=true",
              f"rehearsal_dir={tmp_path}/rehearsal", "threads=1", "logger=none", "progress=false")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    (row,) = csv.DictReader(open(next((tmp_path / "rehearsal" / "rows").glob("*.csv"))))
    assert row["units_kept"] == "3" and float(row["ppl_pruned"]) > 0 and row["rehearsal"] == "True"


def test_a_missing_path_and_a_wrong_one_are_one_clear_message(tmp_path):
    res = run(tmp_path, "model=hf_causal_lm", "dry_run=true", "logger=none")
    assert (
        res.returncode == 2 and "sglp: error: model.path has no value" in res.stderr and "Traceback" not in res.stderr
    )
    res = run(tmp_path, "model=hf_causal_lm", f"model.path={tmp_path}/none", "dry_run=true", "logger=none")
    assert res.returncode == 2 and "no readable config.json" in res.stderr and "Traceback" not in res.stderr


def test_llama3_1_8b_is_hf_causal_lm_with_its_published_config():
    """Reference: Meta's published size of LLaMA-3.1-8B, 8,030,261,248 parameters (untied 128,256-token head)."""
    from helpers import compose_with
    from hydra.utils import instantiate

    from sglp.core.units import prunable_units
    from sglp.experiment.operating_points import build_on_meta

    cfg = compose_with("model=llama3_1_8b")
    assert cfg.model.arch._target_ == compose_with("model=hf_causal_lm", "model.path=x").model.arch._target_
    model = build_on_meta(lambda: instantiate(cfg.model.arch))
    assert sum(p.numel() for p in model.parameters()) == 8_030_261_248 and len(prunable_units(model)) == 32
    assert model.config.rope_parameters["rope_type"] == "llama3"
