"""Fashion-MNIST IDX reading and lookup, on tiny files written here in the real format."""

import gzip
import struct

import numpy as np
import pytest
import torch

from sglp.core.errors import DataNotFoundError
from sglp.data import fashion_mnist as fm
from sglp.data.batches import Batches, random_crop_flip


def write_idx(path, array: np.ndarray, gz: bool = True):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.fixture
def tiny_fmnist(tmp_path):
    g = np.random.default_rng(0)
    arrays = {
        "train_images": g.integers(0, 256, (60, 28, 28)),
        "train_labels": np.arange(60) % 10,
        "test_images": g.integers(0, 256, (20, 28, 28)),
        "test_labels": np.arange(20) % 10,
    }
    for key, stem in fm.FILES.items():
        write_idx(tmp_path / (stem + ".gz"), arrays[key])
    return tmp_path, arrays


def test_idx_round_trip(tmp_path):
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", a)
    write_idx(tmp_path / "y", a, gz=False)
    assert np.array_equal(fm.read_idx(tmp_path / "x.gz"), a)
    assert np.array_equal(fm.read_idx(tmp_path / "y"), a)


def test_corrupt_idx_is_a_clear_error(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04garbage")
    with pytest.raises(DataNotFoundError, match="not an IDX file"):
        fm.read_idx(tmp_path / "bad")


def test_load_from_data_dir_splits_disjointly(tiny_fmnist, monkeypatch):
    root, arrays = tiny_fmnist
    monkeypatch.setattr(fm, "DEBIAN_DIR", root / "nowhere")
    splits = fm.load_fashion_mnist(str(root), calib_size=15, download=False)
    assert splits.train_images.shape == (45, 1, 28, 28) and splits.calib_images.shape == (15, 1, 28, 28)
    assert splits.test_images.shape == (20, 1, 28, 28)
    # train + calib is a permutation of the training files; test is the test file
    rows = {bytes(x.numpy().tobytes()) for x in torch.cat([splits.train_images, splits.calib_images])}
    assert rows == {bytes(x.astype(np.uint8).tobytes()) for x in arrays["train_images"][:, None]}
    assert np.array_equal(splits.test_labels.numpy(), arrays["test_labels"])


def test_missing_data_message_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fm.load_fashion_mnist(str(tmp_path / "empty"), download=False)


def test_batches_are_seeded_and_resumable():
    images = torch.randint(0, 256, (50, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(50)
    make = lambda epoch: Batches(
        images,
        labels,
        (0.5,),
        (0.25,),
        16,
        shuffle=True,
        augment=True,
        crop_pad=2,
        flip=True,
        seed=3,
        epoch=epoch,
        drop_last=True,
    )
    a, b = list(make(1)), list(make(1))
    assert len(a) == 3 and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not torch.equal(a[0][1], list(make(2))[0][1])


def test_random_crop_matches_per_sample_crop():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, pad=1, flip=False, generator=g)
    g = torch.Generator().manual_seed(0)
    dy, dx = torch.randint(0, 3, (2,), generator=g), torch.randint(0, 3, (2,), generator=g)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):
        assert torch.equal(out[i], padded[i, :, dy[i] : dy[i] + 4, dx[i] : dx[i] + 4])
