"""run.py on the LLM path end to end: pretrain a tiny LM on a small corpus, then prune it with SGLP (token CKA,
perplexity scorer), LoRA recovery and the local lm-eval task, and read the row back."""

import json

import pytest
from test_run import run  # the same run.py subprocess helper as the vision end-to-end tests

pytest.importorskip("transformers")
pytest.importorskip("lm_eval")

VERSES = [
    "and god said let there be light and there was light",
    "in the beginning was the word and the word was with god",
    "the lord is my shepherd i shall not want",
    "blessed are the meek for they shall inherit the earth",
    "and the evening and the morning were the first day",
    "for god so loved the world that he gave his only son",
]


@pytest.mark.slow  # ~60 s: pretraining included (the prune job alone: test_hf_causal_lm rehearsals)
def test_tiny_llm_pretrain_then_prune_end_to_end(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"{i} {VERSES[i % 6]} {VERSES[(i * 5) % 6]}" for i in range(400)))
    model = [
        "model=tiny_llama", f"model.path={tmp_path}/lm", "model.vocab_size=200", "model.build.layers=6",
        "model.build.hidden=32", "model.build.heads=4", "model.build.kv_heads=2", "model.build.mlp=64",
        "dataset=kjv", f"dataset.splits.path={corpus}", "dataset.splits.seq_len=32",
        "dataset.splits.calib_fraction=0.1", "dataset.splits.test_fraction=0.1", "logger=none", "progress=false",
        "threads=2",
    ]  # fmt: skip
    pretrain = [
        "mode=pretrain", "pretrain=tiny_llama", "pretrain.steps=80", "pretrain.batch_size=8", "pretrain.lr=1e-2",
        "pretrain.eval_every=40", "pretrain.eval_batches=2", "pretrain.warmup_steps=5",
    ]  # fmt: skip
    res = run(tmp_path, *model, *pretrain)
    assert res.returncode == 0, res.stderr[-3000:]
    meta = json.loads((tmp_path / "lm" / "meta.json").read_text())
    assert meta["test_perplexity"] < meta["unigram_test_perplexity"]
    assert (tmp_path / "lm" / "model.safetensors").exists() and (tmp_path / "lm" / "tokenizer.json").exists()

    res = run(
        tmp_path, *model, "similarity=linear_cka_tokens", "segmenter.k=2", "search.keep=3", "scorer=perplexity",
        "scorer.batch_size=4", "scorer.num_batches=1", "calibration.batch_size=4", "calibration.num_batches=2",
        "finetune=lora", "finetune.steps=4", "finetune.batch_size=4", "finetune.warmup_steps=1", "tasks=local",
        "eval_batch_size=4", "eval_max_batches=2", "latency.batch_sizes=[1]", "latency.min_run_time=0.05",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    row = json.loads((tmp_path / "run" / "row.json").read_text())
    assert row["units_total"] == 6 and row["units_kept"] == 3 and len(row["removed"]) == 3
    assert row["method"] == "segmented/fisher/perplexity" and row["scorer"] == "PerplexityScorer"
    for key in ("ppl_dense", "ppl_pruned_before_ft", "ppl_pruned", "sglp_continuation_dense", "avg_acc_pruned",
                "tokens_per_s_dense_bs1", "tokens_per_s_pruned_bs1"):  # fmt: skip
        assert row[key] is not None and row[key] == row[key], key
    assert row["params_pruned"] < row["params_dense"]
    saved = tmp_path / "run" / "pruned_model"
    config = json.loads((saved / "config.json").read_text())
    assert config["num_hidden_layers"] == 3 and (saved / "tokenizer.json").exists()

    # finetune=none: no recovery, for an LLM as for a vision model (the pruned numbers are those before LoRA)
    res = run(tmp_path, *model, "segmenter.k=2", "search.keep=3", "scorer.batch_size=4", "scorer.num_batches=1",
              "calibration.batch_size=4", "calibration.num_batches=1", "finetune=none", "eval_batch_size=4",
              "eval_max_batches=2", "latency.batch_sizes=[1]", "latency.min_run_time=0.05", "save_pruned_model=false",
              f"hydra.run.dir={tmp_path}/no_ft")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    row = json.loads((tmp_path / "no_ft" / "row.json").read_text())
    assert row["lora_steps"] == 0 and row["ppl_pruned"] == row["ppl_pruned_before_ft"]
