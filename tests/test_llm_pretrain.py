"""LM pretraining on a tiny corpus: it learns (beats the unigram baseline), saves a loadable model, and resumes."""

import math
import os

import pytest
import torch

transformers = pytest.importorskip("transformers")

from sglp.data.text import TextSplits  # noqa: E402
from sglp.kinds.causal_lm.models import load_causal_lm, tiny_llama  # noqa: E402
from sglp.kinds.causal_lm.perplexity import perplexity  # noqa: E402
from sglp.kinds.causal_lm.pretrain import LMTrainConfig, pretrain_causal_lm, unigram_perplexity  # noqa: E402
from sglp.kinds.causal_lm.tokenizer import train_tokenizer  # noqa: E402

TEXT = " ".join(f"verse {i % 7} of chapter {i % 5} saith the lord" for i in range(600))


def setup():
    tok = train_tokenizer(TEXT, vocab_size=120)
    data = TextSplits(torch.tensor(tok.encode(TEXT)), seq_len=32, calib_fraction=0.1, test_fraction=0.1)
    torch.manual_seed(0)
    model = tiny_llama(len(tok), layers=2, hidden=32, heads=4, kv_heads=2, mlp=64, max_len=64)
    return tok, data, model


def test_unigram_perplexity_by_hand():
    train, test = torch.tensor([0, 0, 1]), torch.tensor([0, 2])
    p = torch.tensor([3.0, 2.0, 1.0]) / 6  # add-one counts over a vocabulary of 3
    assert unigram_perplexity(train, test, 3) == pytest.approx(math.exp(-(math.log(p[0]) + math.log(p[2])) / 2))


def test_pretraining_learns_saves_and_loads(tmp_path):
    tok, data, model = setup()
    cfg = LMTrainConfig(steps=60, batch_size=8, lr=1e-2, min_lr=1e-3, warmup_steps=5, eval_every=30, eval_batches=2)
    meta = pretrain_causal_lm(model, tok, data, cfg, tmp_path / "lm", progress=False)
    assert meta["test_perplexity"] < 0.5 * meta["unigram_test_perplexity"]
    again, tok2 = load_causal_lm(str(tmp_path / "lm"))
    assert perplexity(again, data.test_batches(8)) == pytest.approx(meta["test_perplexity"], rel=1e-5)
    assert tok2.encode("verse 3") == tok.encode("verse 3")
    assert (tmp_path / "lm" / "train_log.csv").read_text().count("\n") == 3  # header + 2 evaluations


def test_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    cfg = LMTrainConfig(steps=40, batch_size=8, lr=1e-2, warmup_steps=5, eval_every=20, eval_batches=1)
    tok, data, full = setup()
    pretrain_causal_lm(full, tok, data, cfg, tmp_path / "full", progress=False)

    class Killed(Exception):
        pass

    real_replace = os.replace

    def replace_then_kill(src, dst):
        real_replace(src, dst)
        raise Killed  # the process dies right after its first state save (step 20)

    tok, data, first = setup()
    monkeypatch.setattr(os, "replace", replace_then_kill)
    with pytest.raises(Killed):
        pretrain_causal_lm(first, tok, data, cfg, tmp_path / "cut", progress=False)
    monkeypatch.undo()
    assert (tmp_path / "cut" / "train_state.pt").exists() and not (tmp_path / "cut" / "model.safetensors").exists()
    tok, data, resumed = setup()
    pretrain_causal_lm(resumed, tok, data, cfg, tmp_path / "cut", resume=True, progress=False)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
