"""SGD training: schedules, and resume after an interruption equals an uninterrupted run."""

import math

import pytest
import torch

from sglp.core.errors import CheckpointError
from sglp.data.batches import Batches, ImageSplits
from sglp.kinds.classification.models.resnet_cifar import resnet20
from sglp.kinds.classification.training import SGDConfig, evaluate, train


def tiny_data() -> ImageSplits:
    g = torch.Generator().manual_seed(0)
    imgs = lambda n: torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)  # noqa: E731
    labels = lambda n: torch.randint(0, 3, (n,), generator=g)  # noqa: E731
    return ImageSplits(
        "tiny",
        imgs(48),
        labels(48),
        imgs(16),
        labels(16),
        imgs(16),
        labels(16),
        3,
        (0.5,),
        (0.25,),
        crop_pad=1,
        flip=True,
    )


CONFIG = SGDConfig(epochs=3, batch_size=16, lr=0.05, schedule="cosine", warmup_epochs=0.5)


class Interrupt(Exception):
    pass


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    data = tiny_data()
    torch.manual_seed(1)
    reference = resnet20(3, 1)
    init = {k: v.clone() for k, v in reference.state_dict().items()}
    train(reference, data, CONFIG, seed=4, progress=False)

    def stop_after_first(record):
        if record["epoch"] == 2:
            raise Interrupt

    interrupted = resnet20(3, 1)
    interrupted.load_state_dict(init)
    state = tmp_path / "state.pt"
    with pytest.raises(Interrupt):
        train(interrupted, data, CONFIG, seed=4, state_path=state, on_epoch=stop_after_first, progress=False)
    resumed = resnet20(3, 1)  # a fresh process would start from scratch weights
    history = train(resumed, data, CONFIG, seed=4, state_path=state, resume=True, progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_corrupt_training_state_is_a_clear_error(tmp_path):
    state = tmp_path / "state.pt"
    state.write_bytes(b"nope")
    with pytest.raises(CheckpointError, match="cannot resume"):
        train(resnet20(3, 1), tiny_data(), CONFIG, state_path=state, resume=True, progress=False)


@pytest.mark.parametrize("schedule", ["cosine", "multistep", "constant"])
def test_learning_rate_schedules(schedule):
    cfg = SGDConfig(epochs=4, lr=0.2, schedule=schedule, milestones=[0.5, 0.75], gamma=0.1, warmup_epochs=1)
    total = 400
    assert cfg.lr_at(0, total) == pytest.approx(0.2 / 100)  # linear warm-up over the first 100 steps
    assert cfg.lr_at(99, total) == pytest.approx(0.2)
    after = [cfg.lr_at(s, total) for s in (100, 250, 399)]
    if schedule == "cosine":
        assert after[0] == pytest.approx(0.2) and after[1] == pytest.approx(0.1) and after[2] < 0.001
        t = (399 - 100) / 300
        assert after[2] == pytest.approx(0.1 * (1 + math.cos(math.pi * t)))
    elif schedule == "multistep":
        assert after == pytest.approx([0.2, 0.02, 0.002])
    else:
        assert after == pytest.approx([0.2] * 3)


def test_training_learns_a_learnable_task():
    """Class c images have brightness in [80c, 80c + 60]: SGD must separate them."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(96) % 3
    images = (labels[:, None, None, None] * 80 + torch.randint(0, 61, (96, 1, 8, 8), generator=g)).to(torch.uint8)
    data = ImageSplits(
        "bands", images[:64], labels[:64], images[64:80], labels[64:80], images[80:], labels[80:], 3, (0.5,), (0.25,)
    )
    plain = Batches(data.train_images, data.train_labels, data.mean, data.std, batch_size=64)
    torch.manual_seed(0)
    model = resnet20(3, 1)
    history = train(model, data, SGDConfig(epochs=6, batch_size=16, lr=0.05, schedule="cosine"), progress=False)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert evaluate(model, plain, progress=False)["acc"] >= 90.0
