"""Layer fusion: averaging, alignment by optimal matching, and the strategy end to end on a tiny network."""

import copy

import pytest
import torch
from helpers import randomise_bn_statistics

from sglp.core.errors import InvalidArgument
from sglp.core.units import prunable_units
from sglp.kinds.classification.models.resnet_cifar import BasicBlock, resnet20
from sglp.methods.fusion import LayerFusion, align_hidden, fuse_units, most_similar_pair, same_shape


def block(seed: int) -> BasicBlock:
    torch.manual_seed(seed)
    b = BasicBlock(8, 8)
    randomise_bn_statistics(b, 0.5)
    for bn in (b.bn1, b.bn2):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.3, 0.3)
    return b.eval()


def test_fusing_a_layer_with_itself_gives_the_layer():
    a = block(0)
    fused = fuse_units(a, copy.deepcopy(a))
    x = torch.randn(2, 8, 6, 6)
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in fused.state_dict().items())
    assert torch.equal(fused(x), a(x))


def test_fusion_is_the_average_of_the_weights():
    a, b = block(0), block(1)
    fused = fuse_units(a, b)
    for k, v in fused.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, (a.state_dict()[k] + b.state_dict()[k]) / 2)


def test_alignment_recovers_a_permuted_copy():
    a = block(0)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(3))
    b = copy.deepcopy(a)
    b.permute_hidden(perm)
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(b(x), a(x), atol=1e-6)  # permuting hidden channels keeps the function
    assert not torch.equal(b.conv1.weight, a.conv1.weight)
    naive = fuse_units(a, b)
    aligned = fuse_units(a, b, align=True)
    assert torch.allclose(aligned(x), a(x), atol=1e-6)  # matching undoes the permutation exactly
    assert not torch.allclose(naive(x), a(x), atol=1e-3)
    assert torch.equal(align_hidden(a, b).conv1.weight, a.conv1.weight)


def test_most_similar_pair_only_pairs_same_shapes():
    a, b = block(0), block(1)
    other = BasicBlock(8, 16, stride=2)
    assert not same_shape(a, other)
    pair, compared = most_similar_pair([a, other, b, copy.deepcopy(a)], adjacent_only=False)
    assert pair[:2] == (0, 3) and pair[2] == pytest.approx(1.0) and compared == 3
    pair, compared = most_similar_pair([a, other, b], adjacent_only=True)
    assert pair is None and compared == 0
    with pytest.raises(InvalidArgument):
        fuse_units(a, other)


def test_layer_fusion_reaches_the_target_with_a_working_smaller_model():
    torch.manual_seed(0)
    net = resnet20(10, 1).eval()
    before = copy.deepcopy(net.state_dict())
    result = LayerFusion(keep=5, align=True)(net, progress=False)
    assert len(prunable_units(result.pruned)) == 5 and len(result.removed) == 4
    assert sorted(result.kept + result.removed) == list(range(9))
    assert sorted(f["removed"] for f in result.extra["fused"]) == result.removed
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # input untouched
    assert sum(p.numel() for p in result.pruned.parameters()) < sum(p.numel() for p in net.parameters())
    assert result.pruned(torch.randn(2, 1, 16, 16)).shape == (2, 10)
    with pytest.raises(InvalidArgument, match="no same-shaped pair"):
        LayerFusion(keep=2)(net, progress=False)  # the two stage-transition blocks cannot be fused


def test_one_fusion_step_replaces_the_pair_by_its_aligned_average():
    torch.manual_seed(0)
    net = resnet20(10, 1).eval()
    units = [m for _, m in prunable_units(net)]
    (i, j, _), _ = most_similar_pair(units, adjacent_only=False)
    result = LayerFusion(keep=8, align=True)(net, progress=False)
    assert result.removed == [j] and result.extra["fused"][0]["into"] == i
    got = prunable_units(result.pruned)[i][1]
    expected = fuse_units(units[i], units[j], align=True)
    assert all(torch.allclose(v, expected.state_dict()[k]) for k, v in got.state_dict().items())
    x = torch.randn(2, 1, 16, 16)
    assert result.pruned(x).shape == (2, 10)


def test_a_retrain_recipe_trains_after_every_fusion_step_with_the_training_handed_in():
    torch.manual_seed(0)
    net = resnet20(10, 1).eval()
    calls = []

    def retrain(model, recipe, seed):  # stands in for the kind's training: shrinks every weight
        calls.append((len(prunable_units(model)), recipe, seed))
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.9)

    result = LayerFusion(keep=6, retrain="recipe", seed=3)(net, progress=False, retrain=retrain)
    assert calls == [(8, "recipe", 4), (7, "recipe", 5), (6, "recipe", 6)]
    plain = LayerFusion(keep=6, seed=3)(net, progress=False)
    x = torch.randn(2, 1, 16, 16)
    assert not torch.allclose(result.pruned(x), plain.pruned(x))  # the retrained model is the one returned
    with pytest.raises(InvalidArgument, match="kind's training"):
        LayerFusion(keep=6, retrain="recipe")(net, progress=False)


def test_the_classifier_kind_retrains_with_its_own_sgd(tmp_path):
    """Task.retrain of a classifier is its SGD on the training split (the same steps as `train` with that seed);
    a recipe of another kind, or a kind without training, is refused with the fix."""
    import functools

    from sglp.core.checkpoint import save_checkpoint
    from sglp.data.fashion_mnist import load_fashion_mnist
    from sglp.kinds.base import NoFinetuning, Task
    from sglp.kinds.classification.task import ClassificationTask
    from sglp.kinds.classification.training import SGDConfig, train

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", resnet20(10, 1))
    data = functools.partial(load_fashion_mnist, path="data", calib_size=200)
    task = ClassificationTask(resnet20(10, 1), str(tmp_path / "m.pt"), data, NoFinetuning(), progress=False)
    recipe = SGDConfig(epochs=1, batch_size=16, lr=0.05, max_steps_per_epoch=3)
    dense = task.load_model()
    a, b = copy.deepcopy(dense), copy.deepcopy(dense)
    task.retrain(a, recipe, seed=7)
    train(b, task.data, recipe, seed=7, progress=False)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not all(torch.equal(v, dense.state_dict()[k]) for k, v in a.state_dict().items())
    with pytest.raises(InvalidArgument, match="SGDConfig"):
        task.retrain(a, {"lr": 0.1}, seed=0)
    with pytest.raises(InvalidArgument, match="strategy.retrain=null"):
        Task.retrain(task, a, recipe, seed=0)


def test_a_retrain_the_kind_cannot_do_is_refused_before_the_job_reads_any_data(tmp_path):
    """The job (and the pre-flight, through the same `check_task`) asks the kind whether it can retrain with the
    recipe before the dense model is measured: a wrong recipe type, or a kind without training, fails with the fix
    and no data read; a recipe the kind takes passes the check."""
    import functools

    from sglp.core.checkpoint import save_checkpoint
    from sglp.data.fashion_mnist import load_fashion_mnist
    from sglp.experiment.pipeline import JobSettings, run_pruning
    from sglp.kinds.base import NoFinetuning, Task
    from sglp.kinds.classification.task import ClassificationTask
    from sglp.kinds.classification.training import SGDConfig

    save_checkpoint(tmp_path / "m.pt", resnet20(10, 1))
    data = functools.partial(load_fashion_mnist, path="data", calib_size=200)
    task = ClassificationTask(resnet20(10, 1), str(tmp_path / "m.pt"), data, NoFinetuning(), progress=False)
    model = task.load_model()
    settings = JobSettings(progress=False)
    with pytest.raises(InvalidArgument, match="SGDConfig"):
        run_pruning(model, task, LayerFusion(keep=6, retrain={"lr": 0.1}), settings, tmp_path / "run", None)
    assert task._data is None  # refused before the dense evaluation built the data

    class NoTraining(ClassificationTask):  # a kind that cannot retrain: the base refusal
        check_retrain = Task.check_retrain

    other = NoTraining(resnet20(10, 1), str(tmp_path / "m.pt"), data, NoFinetuning(), progress=False)
    with pytest.raises(InvalidArgument, match="strategy.retrain=null"):
        LayerFusion(keep=6, retrain=SGDConfig(epochs=1)).check_task(other)
    LayerFusion(keep=6, retrain=SGDConfig(epochs=1)).check_task(task)
    LayerFusion(keep=6).check_task(other)  # no recipe, nothing asked of the kind
