"""ImageFolder datasets on a tiny tree of PNG files written here."""

import numpy as np
import pytest
import torch
from PIL import Image

from sglp.core.errors import DataNotFoundError
from sglp.data.image_folder import FolderSplits

CLASSES = ["n01440764", "n02102040", "n02979186"]


def write_tree(root, train_per_class: int = 6, val_per_class: int = 2, size: int = 40) -> None:
    g = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c, cls in enumerate(CLASSES):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = g.integers(0, 256, (size, size, 3), dtype=np.uint8)
                pixels[..., c] = 255  # class c is bright in channel c
                Image.fromarray(pixels).save(root / split / cls / f"img_{i}.png")


@pytest.fixture
def tree(tmp_path):
    write_tree(tmp_path)
    return tmp_path


def test_splits_shapes_labels_and_disjoint_calibration(tree):
    data = FolderSplits(str(tree), image_size=32, resize=36, calib_size=5, workers=0)
    assert data.num_classes == 3 and data.input_shape == (3, 32, 32)
    assert len(data.calib_indices) == 5 and len(data.train_indices) == 13
    assert not set(data.calib_indices) & set(data.train_indices)
    x, y = next(iter(data.test_batches(6)))
    assert x.shape == (6, 3, 32, 32) and y.tolist() == [0, 0, 1, 1, 2, 2]
    # the eval transform keeps each class's bright channel the brightest
    assert all(x[i].mean((1, 2)).argmax().item() == y[i].item() for i in range(6))
    batches = data.train_batches(4, seed=1, epoch=0)
    assert len(batches) == 3 and all(b[0].shape == (4, 3, 32, 32) for b in batches)
    assert len(data.calib_batches(2, max_batches=2)) == 2


def test_train_order_depends_on_seed_and_epoch_only(tree):
    data = FolderSplits(str(tree), image_size=32, resize=36, calib_size=5, workers=0)

    def labels(seed, epoch):
        return torch.cat([y for _, y in data.train_batches(4, seed=seed, epoch=epoch)]).tolist()

    assert labels(1, 0) == labels(1, 0)
    assert labels(1, 0) != labels(1, 1) and labels(1, 0) != labels(2, 0)


def test_missing_folders_and_mismatched_classes(tmp_path):
    with pytest.raises(DataNotFoundError, match="no train or val folder"):
        FolderSplits(str(tmp_path / "nothing"), name="imagenette2")
    write_tree(tmp_path)
    (tmp_path / "val" / "extra_class").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "val" / "extra_class" / "a.png")
    with pytest.raises(DataNotFoundError, match="different class folders"):
        FolderSplits(str(tmp_path), workers=0)


def test_the_models_normalisation_and_interpolation_are_applied(tree):
    """model=timm passes timm's mean / std / interpolation. Reference: PIL's resize and crop, normalised by hand."""
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    data = FolderSplits(str(tree), image_size=32, resize=36, calib_size=5, workers=0, mean=mean, std=std,
                        interpolation="bicubic")  # fmt: skip
    x, _ = next(iter(data.test_batches(1)))
    path = data.test_set.samples[0][0]
    image = Image.open(path).convert("RGB").resize((36, 36), Image.BICUBIC).crop((2, 2, 34, 34))
    expected = (torch.tensor(np.asarray(image), dtype=torch.float32).permute(2, 0, 1) / 255
                - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]  # fmt: skip
    assert (x[0] - expected).abs().max() < 1e-4  # torchvision resizes PIL images with PIL: the same pixels
    with pytest.raises(DataNotFoundError, match="interpolation='cubic': choose one of"):
        FolderSplits(str(tree), workers=0, calib_size=5, interpolation="cubic")


def test_dali_cpu_pipeline_matches_the_torch_loader(tree):
    pytest.importorskip("nvidia.dali")
    torch_loader = FolderSplits(str(tree), image_size=32, resize=36, calib_size=5, workers=0)
    dali = FolderSplits(str(tree), image_size=32, resize=36, calib_size=5, workers=1, loader="dali", dali_device="cpu")
    assert dali.dali is not None
    for name in ("test_batches", "calib_batches"):
        a, b = list(getattr(torch_loader, name)(4)), list(getattr(dali, name)(4))
        assert [x.shape for x, _ in a] == [x.shape for x, _ in b]
        assert [y.tolist() for _, y in a] == [y.tolist() for _, y in b]  # same images in the same order
        for (xa, _), (xb, _) in zip(a, b):  # same resize + centre crop + normalisation, up to interpolation
            assert xb.dtype == torch.float32 and (xa - xb).abs().mean() < 0.05
    a, b = list(torch_loader.train_batches(4, seed=1, epoch=2)), list(dali.train_batches(4, seed=1, epoch=2))
    assert [y.tolist() for _, y in a] == [y.tolist() for _, y in b] and b[0][0].shape == (4, 3, 32, 32)


def test_dali_without_gpu_falls_back_to_torch_with_one_notice(tree, caplog):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: DALI runs there")
    with caplog.at_level("WARNING"):
        data = FolderSplits(str(tree), image_size=32, resize=36, calib_size=5, workers=0, loader="dali")
    assert data.dali is None and sum("torch loader" in r.message for r in caplog.records) == 1
    x, _ = next(iter(data.test_batches(3)))
    assert x.shape == (3, 3, 32, 32)
