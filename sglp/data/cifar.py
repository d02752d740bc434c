"""CIFAR-10 / CIFAR-100 (Krizhevsky, 2009) from the python pickle batches torchvision uses.

Layout under `path`: `cifar-10-batches-py/{data_batch_1..5, test_batch}` or
`cifar-100-python/{train, test}`. Each pickle holds `data` (N x 3072 uint8: 1024 red, 1024 green,
1024 blue values, rows of 32) and `labels` (CIFAR-10) or `fine_labels` (CIFAR-100). Without the
files, torchvision's download is tried (internet needed); otherwise one message says what to do.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from sglp.core.errors import DataNotFoundError
from sglp.data.batches import ImageSplits

VARIANTS = {
    10: {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "labels": b"labels",
        "torchvision": "CIFAR10",
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2470, 0.2435, 0.2616),
    },
    100: {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "labels": b"fine_labels",
        "torchvision": "CIFAR100",
        "mean": (0.5071, 0.4865, 0.4409),
        "std": (0.2673, 0.2564, 0.2762),
    },
}


def read_batches(folder: Path, names: list[str], label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) from CIFAR pickle files."""
    images, labels = [], []
    for name in names:
        try:
            with open(folder / name, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
        except (OSError, pickle.UnpicklingError, EOFError) as e:
            raise DataNotFoundError(f"cannot read CIFAR batch {folder / name} ({e}); fetch the dataset again") from e
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def find_cifar(path: str | Path, num_classes: int, download: bool = True) -> Path:
    spec = VARIANTS[num_classes]
    folder = Path(path).expanduser() / spec["folder"]
    needed = spec["train"] + spec["test"]
    if not all((folder / n).is_file() for n in needed) and download:
        try:
            import torchvision.datasets as tvd

            getattr(tvd, spec["torchvision"])(str(Path(path).expanduser()), train=True, download=True)
        except Exception:  # noqa: BLE001 - any download failure ends in the message below
            pass
    if not all((folder / n).is_file() for n in needed):
        raise DataNotFoundError(
            f"CIFAR-{num_classes} not found in {folder} (needs {', '.join(needed)}). Fix: put torchvision's "
            f"'{spec['folder']}' folder in dataset.splits.path, or run with internet access so torchvision "
            "can download it."
        )
    return folder


def load_cifar(
    path: str = "data",
    num_classes: int = 10,
    calib_size: int = 5000,
    split_seed: int = 1234,
    download: bool = True,
    loader: str = "torch",
    dali_device: str = "auto",
) -> ImageSplits:
    """CIFAR-10/100 as in-memory splits: 50k train files -> (50k - calib_size) train + calib; 10k test.
    Augmentation: random crop with 4-pixel padding and horizontal flip; `loader="dali"` does it in DALI pipelines."""
    if num_classes not in VARIANTS:
        raise DataNotFoundError(f"CIFAR has 10 or 100 classes, got num_classes={num_classes}")
    spec = VARIANTS[num_classes]
    folder = find_cifar(path, num_classes, download)
    if loader not in ("torch", "dali"):
        raise DataNotFoundError(f"loader={loader!r}: choose torch or dali")
    splits = ImageSplits.from_train_test(
        f"cifar{num_classes}",
        read_batches(folder, spec["train"], spec["labels"]),
        read_batches(folder, spec["test"], spec["labels"]),
        calib_size,
        split_seed,
        num_classes=num_classes,
        mean=spec["mean"],
        std=spec["std"],
        crop_pad=4,
        flip=True,
    )
    return splits.use_dali(dali_device) if loader == "dali" else splits
