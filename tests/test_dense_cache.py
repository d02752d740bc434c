"""The dense-measurement cache and fine-tuning budgets of a prune job, on ResNet-20 / Fashion-MNIST (real data).

References: a run without the cache (same numbers), a run whose recipe itself has the budget's steps (same
accuracy as the budget's copy), and the step arithmetic counted by brute force."""

import dataclasses
import functools
import json

import pytest
import torch

from sglp.core.checkpoint import save_checkpoint
from sglp.core.errors import InvalidArgument
from sglp.core.segmentation import UniformSegmenter
from sglp.core.units import prunable_units
from sglp.data.fashion_mnist import load_fashion_mnist
from sglp.experiment.dense_cache import DenseCache
from sglp.experiment.pipeline import JobSettings, run_pruning
from sglp.kinds.base import NoFinetuning
from sglp.kinds.classification.models.resnet_cifar import resnet20
from sglp.kinds.classification.task import ClassificationTask
from sglp.kinds.classification.training import SGDConfig
from sglp.methods.criteria.magnitude import Magnitude
from sglp.methods.search import SegmentSearch
from sglp.methods.strategy import SegmentedPruning

RECIPE = SGDConfig(epochs=1, batch_size=32, lr=0.01, max_steps_per_epoch=4, schedule="cosine")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("dense") / "model.pt"
    save_checkpoint(path, resnet20(num_classes=10, in_channels=1))
    return path


def task(checkpoint, finetune=RECIPE, **options) -> ClassificationTask:
    torch.manual_seed(0)
    data = functools.partial(load_fashion_mnist, path="data", calib_size=500)
    options = {"eval_max_batches": 2, "eval_batch_size": 100, "latency_batch_sizes": [1], "latency_min_run_time": 0.02,
               **options}  # fmt: skip
    return ClassificationTask(resnet20(num_classes=10, in_channels=1), str(checkpoint), data, finetune, progress=False,
                              **options)  # fmt: skip


def prune(tmp_path, t: ClassificationTask, cache=None, **settings) -> dict:
    strategy = SegmentedPruning(None, UniformSegmenter(k=1), SegmentSearch(keep=6), Magnitude(p=1), name="one-shot")
    s = JobSettings(calib_batch_size=32, calib_batches=1, progress=False, save_pruned_model=False, **settings)
    return run_pruning(t.load_model(), t, strategy, s, tmp_path / "run", None, dense_cache=cache)


def test_cached_dense_measurements_equal_measured_ones_and_are_not_measured_again(tmp_path, checkpoint, monkeypatch):
    cache = DenseCache(tmp_path / "cache", {"settings": "a"})
    fresh = prune(tmp_path, task(checkpoint))
    first = prune(tmp_path, task(checkpoint), cache)
    assert not first["dense_cached"] and first["dense_acc"] == fresh["dense_acc"]

    calls = []
    t = task(checkpoint)
    original = t.evaluate
    monkeypatch.setattr(t, "evaluate", lambda model, stage: calls.append(stage) or original(model, stage))
    second = prune(tmp_path, t, cache)
    assert second["dense_cached"] and calls == ["pruned_before_ft", "pruned"]  # no "dense"
    for key in ("dense_acc", "macs_dense", "params_dense", "latency_ms_dense_bs1"):
        assert second[key] == first[key], key
    assert second["pruned_acc"] == fresh["pruned_acc"] and second["macs_pruned"] == fresh["macs_pruned"]


def test_the_cache_key_follows_the_weights_bytes_and_every_setting(tmp_path, checkpoint):
    digest = task(checkpoint).weights_digest()
    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    save_checkpoint(other, resnet20(num_classes=10, in_channels=1))
    assert task(other).weights_digest() != digest
    copy = tmp_path / "copy.pt"
    copy.write_bytes(checkpoint.read_bytes())
    assert task(copy).weights_digest() == digest  # same bytes elsewhere: same entry
    a, b = DenseCache(tmp_path, {"eval_max_batches": 2}), DenseCache(tmp_path, {"eval_max_batches": 3})
    assert a.key(digest) != b.key(digest) and a.key(digest) == DenseCache(tmp_path, {"eval_max_batches": 2}).key(digest)


def test_an_unreadable_cache_file_is_measured_again_and_rewritten(tmp_path):
    cache = DenseCache(tmp_path, {})
    cache.get("w", "evaluate", lambda: {"dense_acc": 1.5})
    cache.path("w").write_text('{"values": {"evaluate": ')  # a torn write from an older tool
    values, cached = cache.get("w", "evaluate", lambda: {"dense_acc": 2.5})
    assert (values, cached) == ({"dense_acc": 2.5}, False)
    assert json.loads(cache.path("w").read_text())["values"]["evaluate"] == {"dense_acc": 2.5}
    assert cache.get("w", "evaluate", lambda: pytest.fail("measured again"))[1]


def test_a_budget_equals_a_run_whose_recipe_has_that_many_steps_and_leaves_the_main_run_alone(tmp_path, checkpoint):
    with_budgets = prune(tmp_path, task(checkpoint), finetune_budgets=(2, 7))
    plain = prune(tmp_path, task(checkpoint))
    assert with_budgets["pruned_acc"] == plain["pruned_acc"]
    for steps in (2, 7):
        alone = prune(tmp_path, task(checkpoint, finetune=dataclasses.replace(RECIPE, max_steps_per_epoch=steps)))
        assert with_budgets[f"pruned_acc_ft{steps}"] == alone["pruned_acc"], steps
    assert with_budgets["pruned_acc_ft2"] != with_budgets["pruned_acc_ft7"]


def test_budget_recipes_take_exactly_the_steps_asked(checkpoint):
    t = task(checkpoint, finetune=dataclasses.replace(RECIPE, batch_size=128, max_steps_per_epoch=150))
    per_epoch = len(t.data.train_batches(128))
    for steps in (1, 50, 150, per_epoch, per_epoch + 1, 600, 2 * per_epoch):
        r = t.recipe(steps)
        ran = sum(len(t.data.train_batches(128, epoch=e, max_batches=r.max_steps_per_epoch)) for e in range(r.epochs))
        assert ran == steps or (steps % r.epochs and ran - steps < r.epochs), (steps, r.epochs, ran)


def test_budgets_without_a_recipe_and_bad_budgets_are_refused(tmp_path, checkpoint):
    with pytest.raises(InvalidArgument, match="finetune_budgets"):
        prune(tmp_path, task(checkpoint, finetune=NoFinetuning()), finetune_budgets=(5,))
    with pytest.raises(InvalidArgument, match="finetune_budgets"):
        JobSettings(finetune_budgets=(0,))


def test_a_task_that_prunes_in_place_measures_the_dense_model_first_and_keeps_no_copy(tmp_path, checkpoint):
    """Reference: the same job on a copy (the default). In place, the loaded model itself loses its units, the row's
    dense cost is the dense model's (measured before the removal), and every number equals the copy's run;
    `keep_dense` (matched controls need the dense model) turns it off."""
    from sglp.kinds.causal_lm.task import CausalLMTask

    assert CausalLMTask.surgery_in_place and not ClassificationTask.surgery_in_place
    t = task(checkpoint)
    model = t.load_model()
    copied = run_pruning(model, t, *job(), tmp_path / "copy", None)
    assert len(prunable_units(model)) == 9

    t = task(checkpoint)
    t.surgery_in_place = True
    model = t.load_model()
    in_place = run_pruning(model, t, *job(), tmp_path / "in_place", None)
    assert len(prunable_units(model)) == 6  # the loaded model is the pruned one: no second copy existed
    for column in ("params_dense", "macs_dense", "flops_dense", "params_pruned", "macs_pruned", "removed",
                   "pruned_acc_before_ft", "pruned_acc"):  # fmt: skip
        assert in_place[column] == copied[column], column

    t = task(checkpoint)
    t.surgery_in_place = True
    model = t.load_model()
    run_pruning(model, t, *job(keep_dense=True), tmp_path / "kept", None)
    assert len(prunable_units(model)) == 9


def job(**settings):
    strategy = SegmentedPruning(None, UniformSegmenter(k=1), SegmentSearch(keep=6), Magnitude(p=1), name="one-shot")
    return strategy, JobSettings(calib_batch_size=32, calib_batches=1, progress=False, save_pruned_model=False,
                                 **settings)  # fmt: skip
