"""sglp.prune: the one call. Its named methods are the yamls' components with the yamls' defaults; it returns a real
smaller model equal to the original with those units removed, and leaves the original as it was."""

import copy
import itertools

import pytest
import torch
from helpers import ROOT, compose_with
from hydra.utils import instantiate

import sglp
from sglp.api import METHODS, WIDTH, YAMLS, Calibration
from sglp.core.errors import InvalidArgument
from sglp.core.metrics import count_flops
from sglp.core.surgery import remove_layers
from sglp.core.units import prunable_units
from sglp.kinds.classification.models.resnet_cifar import resnet20


def settings(obj) -> dict:
    """A component's plain settings (its type and scalar attributes), for comparing two instances."""
    if obj is None:
        return {}
    plain = {k: v for k, v in vars(obj).items() if isinstance(v, int | float | str | bool | tuple | type(None))}
    return {"type": type(obj).__name__, **plain}


DEPTH = sorted((n, k) for n, k in METHODS if n not in WIDTH)


@pytest.mark.parametrize("name,kind", DEPTH, ids=[f"{n}-{k}" for n, k in DEPTH])
def test_each_named_method_is_its_yamls_components_with_its_defaults(name, kind):
    model = ["model=hf_causal_lm", "model.path=/nowhere"] if kind == "causal_lm" else []
    cfg = compose_with(*model, f"method={YAMLS[name, kind]}", "search.keep=6")
    from_yaml = instantiate(cfg.strategy)
    built, cka_batches = METHODS[name, kind](keep=6, ratio=None, k=None, seed=0)
    for part in ("similarity", "segmenter", "search", "scorer"):
        assert settings(getattr(built, part)) == settings(getattr(from_yaml, part)), part
    assert (built.name, built.label_groups) == (from_yaml.name, from_yaml.label_groups)
    assert cka_batches == (cfg.calibration.batch_size, cfg.calibration.num_batches)


def criterion_settings(c) -> dict:
    """A channel criterion's settings, its Torch-Pruning importance's and its inner score's included."""
    inner = {k: settings(getattr(c, k)) for k in ("importance", "within") if hasattr(c, k)}
    return {**settings(c), **inner, "needs": sorted(c.needs)}  # what evidence it asks for (gradients, features)


def test_every_channel_method_yaml_has_its_named_form():
    yamls = {p.stem for p in (ROOT / "configs" / "method").glob("channels_*.yaml")}
    assert yamls == WIDTH


@pytest.mark.parametrize("name", sorted(WIDTH))
def test_each_channel_method_is_its_yamls_components_with_its_defaults(name):
    cfg = compose_with(f"method={name}", "strategy.budget.flops_reduction_pct=40",
                       "strategy.budget.params_reduction_pct=30")  # fmt: skip
    from_yaml = instantiate(cfg.strategy)
    built, cka_batches = METHODS[name, "classification"](flops_reduction_pct=40, params_reduction_pct=30, seed=0)
    assert criterion_settings(built.criterion) == criterion_settings(from_yaml.criterion)
    again, _ = METHODS[name, "classification"](flops_reduction_pct=40, params_reduction_pct=30, seed=0)
    assert criterion_settings(again.criterion) == criterion_settings(built.criterion), "a second build is the same"
    assert built.budget == from_yaml.budget and settings(built) == settings(from_yaml)
    assert cka_batches == (cfg.calibration.batch_size, cfg.calibration.num_batches)


def test_a_channel_method_keeps_every_unit_and_the_largest_l1_filters_at_the_cost_asked(data):
    torch.manual_seed(0)
    model = resnet20(10, 1).eval()
    pruned, report = sglp.prune(model, data, method="channels_l1", flops_reduction_pct=40)
    assert len(prunable_units(pruned)) == 9 == len(report.kept) and not report.removed
    assert abs(report.flops_reduction_pct - 40) <= 0.5
    assert report.flops == (count_flops(model, (1, 28, 28)), count_flops(pruned, (1, 28, 28)))
    width = report.extra["channel_widths_kept"][0]
    norms = model.blocks[0].conv1.weight.abs().flatten(1).sum(1)  # PFEC: the filters of largest L1 norm stay
    kept = norms.argsort(descending=True)[:width].sort().values
    torch.testing.assert_close(pruned.blocks[0].conv1.weight, model.blocks[0].conv1.weight[kept])
    assert len(prunable_units(model)) == 9 and model.blocks[0].conv1.out_channels == 16  # the original stays
    for bad in ({"keep": 5}, {}):
        with pytest.raises(InvalidArgument, match="flops_reduction_pct"):
            sglp.prune(model, data, method="channels_l1", **bad)
    with pytest.raises(InvalidArgument, match="prunes depth"):
        sglp.prune(model, data, method="sglp", keep=5, flops_reduction_pct=40)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(160, 1, 28, 28, generator=g), torch.randint(0, 10, (160,), generator=g)


@pytest.mark.parametrize("name", ["sglp", "random", "shortgpt"])
def test_prune_returns_the_model_without_the_removed_units_and_leaves_the_original(name, data):
    torch.manual_seed(0)
    model = resnet20(10, 1).eval()
    before = copy.deepcopy(model.state_dict())
    pruned, report = sglp.prune(model, data, keep=5, method=name)
    assert type(pruned) is type(model) and len(prunable_units(pruned)) == 5 == len(report.kept)
    assert sorted(report.kept + report.removed) == list(range(9)) and sum(map(len, report.segments)) == 9
    x = data[0][:4]
    with torch.no_grad():
        assert torch.allclose(pruned.eval()(x), remove_layers(model, report.removed).eval()(x), atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and len(prunable_units(model)) == 9
    assert report.flops == (count_flops(model, (1, 28, 28)), count_flops(pruned, (1, 28, 28)))
    assert 0 < report.flops_reduction_pct < 100


def test_a_dataloader_and_a_pair_of_tensors_give_the_same_choice(data):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data), batch_size=32)
    model = resnet20(10, 1)
    assert sglp.prune(model, loader, keep=6)[1].kept == sglp.prune(model, data, keep=6)[1].kept
    source = Calibration(loader, max_examples=64)
    (x, y), _ = source(48, 2)
    assert torch.equal(x, torch.cat([data[0][:48]])) and torch.equal(source(48, 2)[1][0][:16], data[0][48:64])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "sglp_typo"}, "method='sglp_typo' for a classification model: choose one of channels_chip, "),
        ({"keep": 40}, "search.keep=40 is impossible"),
        ({"keep": 5, "ratio": 0.5}, "set exactly one of search.keep"),
    ],
)
def test_bad_arguments_say_what_to_change(kwargs, message, data):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace("[", r"\[")):
        sglp.prune(resnet20(10, 1), data, **{"keep": 5, **kwargs})


def test_calibration_without_labels_is_refused():
    with pytest.raises(InvalidArgument, match=r"\(inputs, labels\) batches"):
        sglp.prune(resnet20(10, 1), [torch.randn(8, 1, 28, 28)], keep=5)


def test_importing_sglp_stays_light():
    import subprocess
    import sys

    code = "import sys, sglp; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_prune_a_torchvision_network():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(num_classes=10).eval()
    units = len(prunable_units(model))
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    pruned, report = sglp.prune(model, (x, y), keep=units - 2, method="shortgpt")
    assert type(pruned) is type(model) and len(prunable_units(pruned)) == units - 2 and len(report.removed) == 2
    with torch.no_grad():
        assert torch.allclose(pruned.eval()(x[:2]), remove_layers(model, report.removed).eval()(x[:2]), atol=1e-5)
    assert report.params[1] < report.params[0]


def test_prune_a_timm_network():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=10).eval()
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    pruned, report = sglp.prune(model, (x, y), keep=8, method="sglp")
    assert type(pruned) is type(model) and len(prunable_units(pruned)) == 8 == len(report.kept)
    assert len(report.segments) == 3 and report.similarity.shape == (12, 12)
    with torch.no_grad():
        assert torch.allclose(pruned.eval()(x[:2]), remove_layers(model, report.removed).eval()(x[:2]), atol=1e-5)


def tiny_qwen2():
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(
        "qwen2", vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


def test_prune_a_hugging_face_causal_lm_from_token_ids():
    """method="sglp" on a decoder LM is the LLM tables' form (token CKA, lowest perplexity in each segment)."""
    from sglp.kinds.causal_lm.perplexity import perplexity

    model = tiny_qwen2()
    ids = torch.randint(0, 128, (32, 16), generator=torch.Generator().manual_seed(0))
    pruned, report = sglp.prune(model, ids, keep=4)
    assert type(pruned) is type(model) and len(prunable_units(pruned)) == 4 and len(report.removed) == 2
    assert report.flops[1] < report.flops[0] and report.params[1] < report.params[0]
    # inside each segment the kept layers are the lowest-perplexity candidate of the allotted size (brute force)
    batches = Calibration(ids, targets_are_inputs=True)(8, 4)
    for segment in report.segments:
        mine = [u for u in segment if u in report.removed]
        others = [u for u in report.removed if u not in segment]
        best = min(
            itertools.combinations(segment, len(mine)),
            key=lambda drop: perplexity(remove_layers(model, sorted([*drop, *others])), batches),
        )
        assert sorted(best) == mine, segment
    with torch.no_grad():
        torch.testing.assert_close(pruned(ids[:2]).logits, remove_layers(model, report.removed)(ids[:2]).logits)


def test_a_dataloader_of_input_id_dicts_gives_the_same_choice():
    model = tiny_qwen2()
    ids = torch.randint(0, 128, (32, 16), generator=torch.Generator().manual_seed(0))
    loader = [{"input_ids": ids[i : i + 8], "attention_mask": torch.ones(8, 16)} for i in range(0, 32, 8)]
    assert sglp.prune(model, loader, keep=4, method="shortgpt")[1].removed == (
        sglp.prune(model, ids, keep=4, method="shortgpt")[1].removed
    )
    with pytest.raises(InvalidArgument, match="method='sglp_paper_exact' for a causal_lm model: choose one of"):
        sglp.prune(model, ids, keep=4, method="sglp_paper_exact")
    with pytest.raises(InvalidArgument, match=r"calibration: give token ids \(N, T\)"):
        sglp.prune(model, [torch.randn(4, 16)], keep=4)
