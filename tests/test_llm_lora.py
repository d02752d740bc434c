"""LoRA recovery on a tiny LLaMA: it learns, touches only adapters, and merges into a plain model."""

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from sglp.core.errors import InvalidArgument  # noqa: E402
from sglp.data.text import TextSplits  # noqa: E402
from sglp.kinds.causal_lm.lora import LoRAConfig, lora_finetune  # noqa: E402
from sglp.kinds.causal_lm.perplexity import perplexity  # noqa: E402


def tiny_llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(cfg)


def test_lora_lowers_calibration_perplexity_and_merges_into_the_same_class():
    pattern = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8])  # a learnable, repeating "text"
    data = TextSplits(pattern.repeat(400), seq_len=24)
    model = tiny_llama()
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    before = perplexity(model, data.calib_batches(8))
    cfg = LoRAConfig(rank=4, alpha=8, dropout=0.0, lr=1e-2, warmup_steps=5, steps=60, batch_size=8, merge=False)
    peft_model, losses = lora_finetune(model, data, cfg, progress=False)
    assert len(losses) == 60 and losses[-1] < losses[0]
    base = peft_model.get_base_model()
    lora_free = {k.replace(".base_layer", ""): v for k, v in base.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(lora_free[k], v) for k, v in frozen.items())  # only the adapters trained
    after = perplexity(peft_model, data.calib_batches(8))
    assert after < 0.75 * before  # a random-init model with rank-4 adapters: a clear drop, not convergence
    x = data.calib_x[:2]
    with torch.no_grad():
        expected = peft_model(input_ids=x).logits
        merged = peft_model.merge_and_unload()
        assert type(merged) is transformers.LlamaForCausalLM
        assert torch.allclose(merged(input_ids=x).logits, expected, atol=1e-4)


def test_unknown_target_modules_are_a_clear_error():
    data = TextSplits(torch.arange(2000) % 32, seq_len=16)
    with pytest.raises(InvalidArgument, match="target_modules"):
        lora_finetune(tiny_llama(), data, LoRAConfig(target_modules=["c_attn"], steps=1), progress=False)
