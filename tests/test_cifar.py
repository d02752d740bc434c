"""CIFAR loading from tiny pickle batches written here in torchvision's on-disk format."""

import pickle

import numpy as np
import pytest
import torch

from sglp.core.errors import DataNotFoundError
from sglp.data.cifar import VARIANTS, load_cifar


def write_cifar(root, num_classes: int, per_file: int = 12, seed: int = 0) -> dict:
    spec = VARIANTS[num_classes]
    folder = root / spec["folder"]
    folder.mkdir(parents=True)
    g = np.random.default_rng(seed)
    written = {}
    for name in spec["train"] + spec["test"]:
        data = g.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        labels = list(g.integers(0, num_classes, per_file))
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, spec["labels"]: labels, b"filenames": [b"x.png"] * per_file}, f)
        written[name] = (data, labels)
    return written


@pytest.mark.parametrize("num_classes", [10, 100])
def test_reads_pixels_in_channel_major_row_order(tmp_path, num_classes):
    written = write_cifar(tmp_path, num_classes)
    spec = VARIANTS[num_classes]
    splits = load_cifar(str(tmp_path), num_classes, calib_size=6, download=False)
    n_train = 12 * len(spec["train"])
    assert splits.train_images.shape == (n_train - 6, 3, 32, 32) and splits.calib_images.shape == (6, 3, 32, 32)
    test_data, test_labels = written[spec["test"][0]]
    assert splits.test_labels.tolist() == test_labels
    # pixel (c, row, col) of image i is data[i, 1024 c + 32 row + col]
    assert splits.test_images[3, 2, 5, 7].item() == test_data[3, 2 * 1024 + 5 * 32 + 7]
    assert splits.test_images[0, 0, 31, 0].item() == test_data[0, 31 * 32]
    all_train = torch.cat([splits.train_labels, splits.calib_labels]).sort().values
    expected = np.sort(np.concatenate([np.array(written[n][1]) for n in spec["train"]]))
    assert all_train.tolist() == expected.tolist()
    assert splits.num_classes == num_classes and splits.crop_pad == 4


def test_missing_cifar_says_where_to_put_it(tmp_path):
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        load_cifar(str(tmp_path), 10, download=False)


def test_corrupt_batch_is_a_clear_error(tmp_path):
    write_cifar(tmp_path, 10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataNotFoundError, match="data_batch_3"):
        load_cifar(str(tmp_path), 10, download=False)


def test_dali_cpu_pipeline_matches_the_in_memory_batches(tmp_path):
    pytest.importorskip("nvidia.dali")
    import torch.nn.functional as F

    write_cifar(tmp_path, 10, per_file=16)
    plain = load_cifar(str(tmp_path), 10, calib_size=16, download=False)
    dali = load_cifar(str(tmp_path), 10, calib_size=16, download=False, loader="dali", dali_device="cpu")
    for a, b in ((plain.test_batches(6), dali.test_batches(6)), (plain.calib_batches(5), dali.calib_batches(5))):
        a, b = list(a), list(b)
        assert [y.tolist() for _, y in a] == [y.tolist() for _, y in b]  # same samples, same order
        assert all(torch.allclose(xa, xb, atol=1e-5) for (xa, _), (xb, _) in zip(a, b))  # same normalisation
    ref = plain.train_batches(8, seed=1, epoch=2)
    order = ref.order(ref.generator())
    got = list(dali.train_batches(8, seed=1, epoch=2))
    assert [y.tolist() for _, y in got] == [y.tolist() for _, y in ref]
    mean, std = torch.tensor(ref.mean).view(3, 1, 1), torch.tensor(ref.std).view(3, 1, 1)
    x = torch.cat([b for b, _ in got])
    for k in range(len(x)):  # each sample is one of the 81 x 2 crops/flips of its zero-padded original
        padded = F.pad(plain.train_images[order[k]].float() / 255, (4, 4, 4, 4))
        crops = [
            ((c.flip(-1) if f else c) - mean) / std
            for dy in range(9)
            for dx in range(9)
            for c in [padded[:, dy : dy + 32, dx : dx + 32]]
            for f in (0, 1)
        ]
        assert min((x[k] - c).abs().max().item() for c in crops) < 1e-5
