"""The contracts of sglp's extension points, over every yaml of their config groups (timm-style: a new scorer,
segmenter, strategy or model yaml is tested without writing a test).

- scorers (`sglp.methods.scorers.base.Scorer`): prepare on a real model, score a candidate or give one importance
  per unit,
  and the direction (`maximize`) each yaml promises;
- segmenters (`sglp.core.segmentation.Segmenter`): a Segmentation of contiguous segments covering every unit;
- strategies (`sglp.methods.strategy.Strategy`): check, prune without touching the model, describe and label the row;
- models (`sglp.core.units.PrunableModel` and its optional hooks) and their kind (`sglp.kinds.base.Task`).
"""

from __future__ import annotations

import functools

import pytest
import torch
from helpers import CONFIGS, compose_with, with_examples
from hydra.utils import instantiate

from sglp.core.errors import InvalidArgument, SGLPError
from sglp.core.segmentation import Segmentation, Segmenter
from sglp.core.units import PrunableModel, SplitForward, prunable_units, units_bypassed
from sglp.kinds.base import Task
from sglp.methods.scorers.base import Scorer
from sglp.methods.strategy import PruneResult, Strategy


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


# The direction each scorer yaml promises (True: the highest score is kept). Part of the method: flipping one in a
# yaml changes which units survive, so it must be changed here too, with its reason.
DIRECTIONS = {
    "gradnorm": False,  # ours: the smallest GradNorm is kept (results/scorer_study.md)
    "gradnorm_paper": True,  # paper: SGLP Eq. 25 keeps the candidate with the largest GradNorm
    "gradnorm_paper_init": True,  # paper: as gradnorm_paper, with the paper's literal initialisation
    "loss": False,  # a lower calibration loss is better
    "perplexity": False,  # a lower calibration perplexity is better (SGLP's LLM search)
    # per-unit criteria: one importance per unit, the most important units are kept
    **{
        name: True
        for name in (
            "block_influence",
            "bn_gamma",
            "ensemble",
            "feature_map",
            "imprint",
            "l1",
            "l2",
            "linear_probe",
            "random",
            "sr_init",
            "taylor",
        )
    },  # fmt: skip
}


def test_every_scorer_yaml_declares_its_direction_here():
    assert set(DIRECTIONS) == set(options("scorer")), "add the new scorer's direction (and why) to DIRECTIONS"


class Calibration:
    """A calibration source of random inputs (images or token ids) with labels, seeded."""

    def __init__(self, shape: tuple[int, ...], classes: int, tokens: bool = False) -> None:
        self.shape, self.classes, self.tokens = shape, classes, tokens

    def __call__(self, batch_size: int, num_batches: int):
        g = torch.Generator().manual_seed(0)
        out = []
        for _ in range(num_batches):
            if self.tokens:
                ids = torch.randint(0, self.classes, (batch_size, *self.shape), generator=g)
                out.append((ids, ids))
            else:
                x = torch.randn(batch_size, *self.shape, generator=g)
                out.append((x, torch.randint(0, self.classes, (batch_size,), generator=g)))
        return out

    def train_per_class(self, per_class: int, batch_size: int):
        return self(batch_size, max(1, per_class * self.classes // batch_size))


@functools.cache
def vision_model():
    torch.manual_seed(0)
    return instantiate(compose_with("model=resnet20").model.net).eval()


@functools.cache
def language_model():
    torch.manual_seed(0)
    return instantiate(compose_with("model=tiny_llama").model.build)(vocab_size=64).eval()


def scorer_setup(name: str):
    """(scorer, model, calibration) for a scorer yaml: scorers of causal LMs only on a tiny random LLaMA."""
    cfg = compose_with(f"scorer={name}")
    for key, cap in (("batch_size", 8), ("num_batches", 1), ("steps", 5), ("fit_per_class", 2)):
        if cfg.scorer.get(key) is not None:
            cfg.scorer[key] = min(int(cfg.scorer[key]), cap)
    scorer = instantiate(cfg.scorer)
    if "classification" not in scorer.kinds:  # a language-model scorer
        return scorer, language_model(), Calibration((16,), 64, tokens=True)
    return scorer, vision_model(), Calibration((1, 28, 28), 10)


@pytest.mark.parametrize("name", options("scorer"))
def test_scorer_contract(name):
    scorer, model, calibration = scorer_setup(name)
    assert isinstance(scorer, Scorer)
    assert scorer.maximize is DIRECTIONS[name], f"scorer={name} promises maximize={DIRECTIONS[name]}"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scorer.prepare(calibration, model)
    num_units = len(prunable_units(model))
    if scorer.importance is not None:  # a per-unit criterion: one finite importance per unit
        assert scorer.importance.shape == (num_units,) and torch.isfinite(scorer.importance).all()
        assert scorer(model, (0,), segment=[0, 1], kept=[1]) == pytest.approx(float(scorer.importance[1]))
    else:  # a candidate scorer: a finite score of the candidate without units 0 and 1
        with units_bypassed(model, (0, 1)):
            score = scorer(model, (0, 1), segment=[0, 1, 2], kept=[2])
        assert isinstance(score, float) and score == score
    scorer.release()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "scoring leaves the backbone as it was"


BATCH_SCORERS = [n for n in options("scorer") if compose_with(f"scorer={n}").scorer.get("batch_size") is not None]


@pytest.mark.parametrize("name", BATCH_SCORERS)
def test_scorer_rejects_impossible_batches_when_built(name):
    cfg = compose_with(f"scorer={name}")
    cfg.scorer.batch_size = 0
    with pytest.raises(Exception) as raised:  # Hydra wraps what the constructor raises; run.py unwraps it
        instantiate(cfg.scorer)
    error = raised.value.__cause__ or raised.value
    assert isinstance(error, SGLPError) and "batch_size=0" in str(error)


def random_similarity(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    s = (x @ x.T).abs()
    return s / s.max()


@pytest.mark.parametrize("name", options("segmenter"))
def test_segmenter_contract(name):
    segmenter = instantiate(compose_with(f"segmenter={name}").segmenter)
    assert isinstance(segmenter, Segmenter)
    n = 12
    segmenter.check(n)
    result = segmenter(random_similarity(n) if segmenter.needs_similarity else None, n)
    assert isinstance(result, Segmentation)
    assert [u for s in result.segments for u in s] == list(range(n)), "contiguous, in order, covering every unit"
    assert all(result.segments) and result.k == len(result.segments) >= segmenter.min_segments
    if segmenter.k != "auto":
        assert result.k == segmenter.k
    else:
        assert result.loss_curve and all(a >= b for a, b in zip(result.loss_curve, result.loss_curve[1:]))
    with pytest.raises(InvalidArgument):
        segmenter.check(segmenter.min_segments - 1) if segmenter.min_segments > 1 else segmenter.check(0)


STRATEGY_SETTINGS = ["model=resnet20", "search.keep=5", "segmenter.k=2", "scorer=l1", "similarity.kernel=linear"]


@pytest.mark.parametrize("name", options("strategy"))
def test_strategy_contract(name):
    cfg = compose_with(*with_examples(f"strategy={name}"), *STRATEGY_SETTINGS)
    strategy = instantiate(cfg.strategy)
    assert isinstance(strategy, Strategy)
    model = vision_model()
    num_units = len(prunable_units(model))
    strategy.check(num_units)
    depth = strategy.units_kept_target(num_units) is not None  # else it prunes width: every unit stays
    if depth:
        with pytest.raises(SGLPError):
            strategy.check(4)  # 5 units cannot be kept of 4
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calibration = Calibration((1, 28, 28), 10)
    result = strategy(model, calibration=calibration, cka_batches=calibration(16, 1), data=None, progress=False)
    assert isinstance(result, PruneResult)
    assert sorted(result.kept + result.removed) == list(range(num_units))
    kept = strategy.units_kept_target(num_units) if depth else num_units
    assert len(result.kept) == kept == (5 if depth else num_units)
    assert len(prunable_units(result.pruned)) == kept and result.pruned(calibration(2, 1)[0][0]).shape == (2, 10)
    assert sum(p.numel() for p in result.pruned.parameters()) < sum(p.numel() for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the backbone is untouched"
    assert "scorer" in strategy.describe(result)
    label = strategy.label({"strategy": name, "segmenter": "fisher", "scorer": "l1"})
    assert label and label.split("/")[0] in (name, name.replace("_", "-"))


# Model yamls that name a concrete model; hf_causal_lm needs the user's model.path and is tested over families in
# tests/test_hf_causal_lm.py.
MODELS = [m for m in options("model") if "path: ???" not in (CONFIGS / "model" / f"{m}.yaml").read_text()]


@functools.cache
def model_config(name: str):
    overrides = list(with_examples(f"model={name}"))
    cfg = compose_with(*overrides, hydra=True)
    if cfg.model.get("net", {}).get("weights"):  # hub weights: offline here, the architecture is what is tested
        cfg = compose_with(*overrides, "model.net.weights=null", hydra=True)
    return cfg


@pytest.mark.parametrize("name", MODELS)
def test_model_yaml_selects_its_kind_and_builds_a_task(name):
    from sglp.experiment.build import build_task

    cfg = model_config(name)
    kind = cfg.hydra.runtime.choices["kind"]
    assert cfg.model.get("kind", "classification") == kind, "model.kind (read by the pre-flight) = its kind group"
    replace = {"net": None} if "net" in cfg.kind else {}
    task = build_task(cfg, "cpu", **replace)
    assert isinstance(task, Task)
    other_recipe = "finetune=lora" if kind == "classification" else "finetune=quick"
    no_hub = ["model.net.weights=null"] if "weights" in cfg.model.get("net", {}) else []
    with pytest.raises(InvalidArgument, match="finetune"):  # the other kind's recipe is refused when built
        build_task(compose_with(*with_examples(f"model={name}"), other_recipe, *no_hub), "cpu", **replace)


@pytest.mark.parametrize("name", MODELS)
def test_model_exposes_prunable_units_and_its_optional_hooks_are_exact(name):
    cfg = model_config(name)
    if cfg.model.get("kind") == "causal_lm":
        from sglp.experiment.operating_points import build_on_meta

        arch = cfg.model.get("arch") or cfg.model.build
        extra = {} if cfg.model.get("arch") else {"vocab_size": 64}

        def build():  # inside build_on_meta: LLaMA-3.1-8B's 8 B parameters take no memory
            built = instantiate(arch, **extra)
            return built() if isinstance(built, functools.partial) else built

        model = build_on_meta(build)
        if cfg.model.get("arch"):  # fields written out, or a config.json to read (model=hf_causal_lm and its kin)
            from sglp.kinds.causal_lm.models import pretrained_config

            a = cfg.model.arch
            expected = pretrained_config(a.path).num_hidden_layers if "path" in a else a.num_hidden_layers
        else:
            expected = cfg.model.build.layers
        assert len(prunable_units(model)) == expected
        return
    torch.manual_seed(0)
    model = instantiate(cfg.model.net).eval()
    units = prunable_units(model)
    assert len(units) >= 2
    assert isinstance(model, PrunableModel) or type(model).__module__.startswith(("torchvision", "timm")), "adapter"
    x = torch.randn(2, cfg.dataset.channels, *cfg.model.get("input_size", [16, 16]))
    if isinstance(model, SplitForward):  # the split forward reproduces the model at every unit
        with torch.no_grad():
            full = model(x)
            for i in range(len(units)):
                torch.testing.assert_close(model.forward_from(i, model.features_before(i, x)), full)
