"""Decoder-layer removal on tiny Hugging Face models built from config (no hub access)."""

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from sglp.core.errors import UnsupportedModelError  # noqa: E402
from sglp.core.units import prunable_units, units_bypassed  # noqa: E402
from sglp.kinds.causal_lm import decoder_layers, remove_decoder_layers  # noqa: E402

V = 97
COMMON = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=4)
FAMILIES = {
    "llama": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**COMMON, num_key_value_heads=2, max_position_embeddings=64)
    ),
    "mistral": lambda: transformers.MistralForCausalLM(
        transformers.MistralConfig(**COMMON, num_key_value_heads=2, max_position_embeddings=64, sliding_window=8)
    ),
    "qwen2": lambda: transformers.Qwen2ForCausalLM(  # mixed full / sliding-window layers: per-layer config list
        transformers.Qwen2Config(
            **COMMON,
            num_key_value_heads=2,
            max_position_embeddings=64,
            use_sliding_window=True,
            sliding_window=8,
            max_window_layers=3,
        )  # fmt: skip
    ),
    "gpt2": lambda: transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=V, n_embd=32, n_layer=6, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0
        )  # fmt: skip
    ),
}
REMOVED = [1, 4]


def build(family: str) -> nn.Module:
    torch.manual_seed(0)
    return FAMILIES[family]().eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(1, V, (2, 12), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("family", FAMILIES)
def test_removed_model_equals_the_skip_view_of_the_original(family, ids):
    model = build(family)
    assert len(prunable_units(model)) == 6
    with torch.no_grad(), units_bypassed(model, REMOVED):  # the scoring view: layers skipped, nothing renumbered
        expected = model(ids, use_cache=False).logits
    pruned = remove_decoder_layers(model, REMOVED, inplace=False)
    with torch.no_grad():
        got = pruned(ids, use_cache=False).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert type(pruned) is type(model) and len(decoder_layers(pruned)[1]) == 4 == pruned.config.num_hidden_layers
    assert len(decoder_layers(model)[1]) == 6  # inplace=False left the original alone
    idx = [m.layer_idx for layer in decoder_layers(pruned)[1] for m in layer.modules() if hasattr(m, "layer_idx")]
    assert sorted(set(idx)) == [0, 1, 2, 3]


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_with_cache_equals_without_after_removal(family, ids):
    model = remove_decoder_layers(build(family), REMOVED)
    kw = dict(max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert torch.equal(model.generate(ids, use_cache=True, **kw), model.generate(ids, use_cache=False, **kw))


@pytest.mark.parametrize("family", FAMILIES)
def test_save_pretrained_round_trip(family, ids, tmp_path):
    model = remove_decoder_layers(build(family), REMOVED)
    model.save_pretrained(tmp_path)
    again = type(model).from_pretrained(tmp_path).eval()
    assert again.config.num_hidden_layers == 4
    if getattr(model.config, "layer_types", None) is not None:
        assert again.config.layer_types == model.config.layer_types and len(again.config.layer_types) == 4
    with torch.no_grad():
        assert torch.allclose(again(ids).logits, model(ids).logits, atol=1e-6)


def test_per_layer_config_list_follows_the_kept_layers():
    model = build("qwen2")
    before = list(model.config.layer_types)
    remove_decoder_layers(model, [0, 5])
    assert model.config.layer_types == before[1:5]


def test_unknown_family_names_the_setting_to_configure():
    with pytest.raises(UnsupportedModelError, match="layers_path"):
        decoder_layers(nn.Sequential(nn.Linear(2, 2)))
    model = build("llama")
    assert decoder_layers(model, "model.layers")[0] == "model.layers"
    with pytest.raises(UnsupportedModelError):
        remove_decoder_layers(model, [0], layers_path="model.embed_tokens")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("order", ["independent", "sequential"])
def test_perplexity_search_reusing_prefixes_scores_exactly_as_the_whole_model(family, order):
    """The perplexity scorer caches the hidden states entering a segment: every candidate's score equals the
    uncached one bit for bit, the same units are kept, and the layers before a segment run once per segment (not
    once per candidate)."""
    from sglp.methods.scorers.perplexity import PerplexityScorer
    from sglp.methods.search import SegmentSearch

    model = build(family)
    g = torch.Generator().manual_seed(2)
    batches = [(ids, ids) for ids in torch.randint(1, V, (2, 3, 12), generator=g)]
    segments = [[0, 1], [2, 3, 4, 5]]
    results, calls = {}, {}
    for reuse in (False, True):
        scorer = PerplexityScorer(num_batches=2, batch_size=3, reuse_prefix=reuse)
        scorer.prepare(lambda b, n: batches)
        _, layers = decoder_layers(model)
        counts = [0] * len(layers)
        hooks = [layer.register_forward_pre_hook(lambda m, a, i=i, c=counts: c.__setitem__(i, c[i] + 1))
                 for i, layer in enumerate(layers)]  # fmt: skip
        try:
            results[reuse] = SegmentSearch(keep=3, order=order)(model, segments, scorer, progress=False)
        finally:
            for h in hooks:
                h.remove()
        calls[reuse] = counts
    plain, cached = results[False], results[True]
    assert [c["score"] for c in cached.scores] == [c["score"] for c in plain.scores]
    assert cached.kept == plain.kept and cached.removed == plain.removed
    runs_layer0 = [c for c in plain.scores if 0 not in c["removed"]]  # candidates whose network has layer 0
    assert calls[False][0] == 2 * len(runs_layer0)  # uncached: for each such candidate and batch
    first = [c for c in runs_layer0 if c["segment"] == 0]
    prefix_has_layer0 = order == "independent" or 0 in plain.kept  # sequential: segment 0's choice applies
    assert calls[True][0] == 2 * len(first) + 2 * prefix_has_layer0  # cached: the prefix runs once per batch


def test_a_model_dispatched_by_device_map_prunes_like_a_plain_one():
    """A model dispatched by accelerate with an explicit per-layer device map (hooks on every layer, as when
    `model.device_map=auto` spreads an 8B model over a node's GPUs; here every entry is the CPU and the hooks are
    forced) gives the same token CKA, the same perplexity-search scores with prefix reuse, and the same removal
    as the plain model."""
    accelerate = pytest.importorskip("accelerate")
    from sglp.core.similarity import CKA
    from sglp.methods.scorers.perplexity import PerplexityScorer
    from sglp.methods.search import SegmentSearch

    plain, dispatched = build("llama"), build("llama")
    device_map = {"model.embed_tokens": "cpu", **{f"model.layers.{i}": "cpu" for i in range(6)},
                  "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}  # fmt: skip
    dispatched = accelerate.dispatch_model(dispatched, device_map, force_hooks=True)
    assert all(hasattr(layer, "_hf_hook") for layer in decoder_layers(dispatched)[1]), "accelerate's hooks"
    g = torch.Generator().manual_seed(3)
    batches = [(ids, ids) for ids in torch.randint(1, V, (2, 3, 12), generator=g)]
    cka = CKA(token_rows=True)
    torch.testing.assert_close(cka(dispatched, batches, progress=False), cka(plain, batches, progress=False))
    results = []
    for model in (plain, dispatched):
        scorer = PerplexityScorer(num_batches=2, batch_size=3)
        scorer.prepare(lambda b, n: batches)
        results.append(SegmentSearch(keep=3)(model, [[0, 1], [2, 3, 4, 5]], scorer, progress=False))
    assert [c["score"] for c in results[1].scores] == pytest.approx([c["score"] for c in results[0].scores])
    assert results[1].removed == results[0].removed
    a = remove_decoder_layers(plain, results[0].removed)
    b = remove_decoder_layers(dispatched, results[1].removed)
    ids = batches[0][0]
    torch.testing.assert_close(b(input_ids=ids, use_cache=False).logits, a(input_ids=ids, use_cache=False).logits)
