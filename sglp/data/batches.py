"""In-memory image datasets served as seeded mini-batches with batched augmentation.

Small datasets (Fashion-MNIST, CIFAR) fit in memory as uint8; augmenting whole batches
with tensor ops is much faster on a CPU than per-sample PIL transforms.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sglp.core.errors import InvalidArgument


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop (zero padding `pad`) and horizontal flip of a (B, C, H, W) batch."""
    b, c, h, w = x.shape
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :]
        x = padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    if flip:
        mask = torch.rand(b, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


@dataclass
class Batches:
    """An iterable of normalised (x, y) batches over uint8 images (N, C, H, W) and labels (N,).

    Order and augmentation depend only on (seed, epoch), so a resumed run sees the same
    data as an uninterrupted one.
    """

    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    batch_size: int
    shuffle: bool = False
    augment: bool = False
    crop_pad: int = 0
    flip: bool = False
    seed: int = 0
    epoch: int = 0
    max_batches: int | None = None
    drop_last: bool = False

    def __len__(self) -> int:
        n = len(self.labels)
        full = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return min(full, self.max_batches) if self.max_batches is not None else full

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)

    def order(self, g: torch.Generator) -> torch.Tensor:
        """The sample order of this pass: a permutation drawn from `g` when shuffling, else file order."""
        n = len(self.labels)
        return torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = self.generator()
        order = self.order(g)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images[idx].float().div_(255.0)
            if self.augment:
                x = random_crop_flip(x, self.crop_pad, self.flip, g)
            yield (x - mean) / std, self.labels[idx]


@dataclass
class ImageSplits:
    """Train / calibration / test splits of an in-memory image dataset.

    The calibration split is carved from the training files with a fixed seed and never
    used for training; CKA and the search scorers read it, never the test set.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    calib_images: torch.Tensor
    calib_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pad: int = 0
    flip: bool = False
    dali: str | None = None  # "gpu" | "cpu": serve batches from DALI pipelines (sglp.data.dali)

    @classmethod
    def from_train_test(
        cls,
        name: str,
        train: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor],
        calib_size: int,
        split_seed: int,
        **kw,
    ) -> ImageSplits:
        """Splits from the training files and the test files, carving the calibration set (seeded) out of
        the training files. `kw`: num_classes, mean, std, crop_pad, flip."""
        tr_x, tr_y, ca_x, ca_y = split_calibration(*train, calib_size, split_seed)
        return cls(name, tr_x, tr_y, ca_x, ca_y, *test, **kw)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    def use_dali(self, dali_device: str = "auto") -> ImageSplits:
        """Serve batches from DALI pipelines (GPU, or CPU when asked); without CUDA `auto` keeps the torch batches
        with one logged notice. Returns self."""
        from sglp.data.dali import dali_backend

        self.dali = dali_backend(dali_device)
        if self.dali is None:
            logging.getLogger(__name__).warning(
                "loader=dali needs CUDA for its GPU pipelines; no GPU here, using the torch loader"
            )
        return self

    def _batches(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, **kw) -> Batches:
        batches = Batches(images, labels, self.mean, self.std, batch_size, crop_pad=self.crop_pad, flip=self.flip, **kw)
        if self.dali:
            from sglp.data.dali import DaliArrayBatches

            return DaliArrayBatches(batches, self.dali)  # type: ignore[return-value]
        return batches

    def train_batches(self, batch_size: int, seed: int = 0, epoch: int = 0, max_batches: int | None = None) -> Batches:
        return self._batches(
            self.train_images,
            self.train_labels,
            batch_size,
            shuffle=True,
            augment=True,
            seed=seed,
            epoch=epoch,
            max_batches=max_batches,
            drop_last=True,
        )

    def calib_batches(self, batch_size: int, max_batches: int | None = None, seed: int = 0) -> Batches:
        """Calibration batches: no augmentation, a seeded shuffle so each batch mixes classes."""
        return self._batches(
            self.calib_images,
            self.calib_labels,
            batch_size,
            shuffle=True,
            seed=seed,
            max_batches=max_batches,
            drop_last=True,
        )

    def test_batches(self, batch_size: int = 500, max_batches: int | None = None) -> Batches:
        return self._batches(self.test_images, self.test_labels, batch_size, max_batches=max_batches)

    def train_per_class(self, per_class: int, batch_size: int, seed: int = 0) -> Batches:
        """Up to `per_class` training examples of every class, without augmentation (probes fitted on training
        data, as LayerPrune's imprinting is)."""
        idx = class_balanced_indices(self.train_labels, per_class, seed)
        return self._batches(self.train_images[idx], self.train_labels[idx], batch_size)


def class_balanced_indices(labels: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Positions of up to `per_class` examples of every class in `labels` (N,), drawn by a seeded permutation;
    sorted, so batches follow the file order."""
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    taken: dict[int, int] = {}
    chosen = []
    for i in perm.tolist():
        c = int(labels[i])
        if taken.get(c, 0) < per_class:
            taken[c] = taken.get(c, 0) + 1
            chosen.append(i)
    return torch.tensor(sorted(chosen), dtype=torch.long)


def split_calibration(images: torch.Tensor, labels: torch.Tensor, calib_size: int, seed: int = 1234):
    """Split (images, labels) into (train, calib) with a fixed seeded permutation."""
    if not 0 < calib_size < len(labels):
        raise InvalidArgument(f"dataset.splits.calib_size={calib_size} must be in 1..{len(labels) - 1} (examples held "
                              "out of the training files for calibration)")  # fmt: skip
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    calib, train = perm[:calib_size], perm[calib_size:]
    return images[train], labels[train], images[calib], labels[calib]
