"""ImageFolder datasets (ImageNet, Imagenette2, Imagewoof2): `path/train/<class>/*` and `path/val/<class>/*`.

Streamed from disk (ImageNet does not fit in memory) by torch DataLoaders (`loader="torch"`), or by NVIDIA DALI
pipelines that decode and augment on the GPU (`loader="dali"`, sglp.data.dali). Training batches use
RandomResizedCrop + horizontal flip; calibration and test batches Resize + CenterCrop. The
calibration split is a fixed, seeded subset of the training tree, never trained on. Both loaders read the
samples in the same order: a permutation drawn from (seed, epoch) for training, fixed for calibration, file
order for the test split.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from sglp.core.errors import DataNotFoundError
from sglp.data.normalize import IMAGENET_MEAN, IMAGENET_STD  # noqa: F401 (also importable from here)

LOADERS = ("torch", "dali")
log = logging.getLogger(__name__)


class Limited:
    """An iterable of at most `max_batches` batches of a DataLoader, with a matching len()."""

    def __init__(self, loader: DataLoader, max_batches: int | None) -> None:
        self.loader, self.max_batches = loader, max_batches

    def __len__(self) -> int:
        n = len(self.loader)
        return n if self.max_batches is None else min(n, self.max_batches)

    def __iter__(self):
        return itertools.islice(iter(self.loader), len(self))


class FolderSplits:
    """Train / calibration / test splits of an ImageFolder tree, with the same batch interface as
    `sglp.data.batches.ImageSplits`."""

    def __init__(
        self,
        path: str,
        name: str = "imagefolder",
        image_size: int = 224,
        resize: int = 256,
        calib_size: int = 5000,
        split_seed: int = 1234,
        workers: int = 4,
        train_dir: str = "train",
        test_dir: str = "val",
        loader: str = "torch",
        dali_device: str = "auto",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        interpolation: str = "bilinear",
    ) -> None:
        """`mean` / `std` (RGB; None: ImageNet's) and `interpolation` (bilinear, bicubic, ...) as the model's
        weights were trained with (model=timm sets them from timm's data config)."""
        try:
            resample = transforms.InterpolationMode(interpolation)
        except ValueError:
            modes = [m.value for m in transforms.InterpolationMode]
            raise DataNotFoundError(f"{name}: interpolation={interpolation!r}: choose one of {modes}") from None
        self.mean = tuple(mean) if mean is not None else IMAGENET_MEAN
        self.std = tuple(std) if std is not None else IMAGENET_STD
        root_path = Path(path).expanduser()
        missing = [d for d in (train_dir, test_dir) if not (root_path / d).is_dir()]
        if missing:
            raise DataNotFoundError(
                f"{name}: no {' or '.join(missing)} folder under {root_path}. Fix: extract the dataset so that "
                f"{root_path}/{train_dir}/<class>/<images> and {root_path}/{test_dir}/<class>/<images> exist "
                "(ImageNet's validation images sorted into class folders), and set dataset.splits.path."
            )
        normalise = transforms.Normalize(self.mean, self.std)
        self.train_tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(image_size, interpolation=resample),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                normalise,
            ]
        )
        self.eval_tf = transforms.Compose(
            [
                transforms.Resize(resize, interpolation=resample),
                transforms.CenterCrop(image_size),
                transforms.ToTensor(),
                normalise,
            ]
        )
        self.train_set = datasets.ImageFolder(str(root_path / train_dir), self.train_tf)
        self.calib_set = datasets.ImageFolder(str(root_path / train_dir), self.eval_tf)
        self.test_set = datasets.ImageFolder(str(root_path / test_dir), self.eval_tf)
        if self.train_set.classes != self.test_set.classes:
            raise DataNotFoundError(f"{name}: {train_dir}/ and {test_dir}/ have different class folders")
        n = len(self.train_set)
        if not 0 < calib_size < n:
            raise DataNotFoundError(f"{name}: calib_size={calib_size} must be between 1 and {n - 1} (training images)")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed)).tolist()
        self.calib_indices, self.train_indices = perm[:calib_size], perm[calib_size:]
        self.name, self.workers = name, workers
        self.num_classes = len(self.train_set.classes)
        self.image_size, self.resize = image_size, resize
        self.input_shape = (3, image_size, image_size)
        self.dali = None
        if loader not in LOADERS:
            raise DataNotFoundError(f"{name}: loader={loader!r}: choose one of {LOADERS}")
        if loader == "dali":
            from sglp.data.dali import DaliLoaders, dali_backend

            backend = dali_backend(dali_device)
            if backend is None:
                log.warning("loader=dali needs CUDA for its GPU pipelines; no GPU here, using the torch loader")
            else:
                self.dali = DaliLoaders(self, backend, workers)

    @staticmethod
    def order(indices: list[int], seed: int | None) -> list[int]:
        """`indices` permuted by a generator seeded with `seed` (as they are when seed is None)."""
        if seed is None:
            return list(indices)
        perm = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed)).tolist()
        return [indices[i] for i in perm]

    def _loader(self, dataset, indices: list[int], batch_size: int, seed: int | None, drop_last: bool):
        if self.dali is not None:
            return self.dali.loader(dataset, self.order(indices, seed), batch_size, seed, drop_last)
        return DataLoader(
            Subset(dataset, self.order(indices, seed)),
            batch_size=batch_size,
            shuffle=False,
            generator=torch.Generator().manual_seed(seed or 0),  # seeds the workers' augmentation
            num_workers=self.workers,
            pin_memory=torch.cuda.is_available(),
            drop_last=drop_last,
            persistent_workers=False,
        )

    def train_batches(self, batch_size: int, seed: int = 0, epoch: int = 0, max_batches: int | None = None) -> Limited:
        """Shuffled, augmented; the order depends only on (seed, epoch), so resumed runs see the same data."""
        loader = self._loader(self.train_set, self.train_indices, batch_size, seed * 100_003 + epoch, True)
        return Limited(loader, max_batches)

    def calib_batches(self, batch_size: int, max_batches: int | None = None, seed: int = 0) -> Limited:
        return Limited(self._loader(self.calib_set, self.calib_indices, batch_size, seed, True), max_batches)

    def train_per_class(self, per_class: int, batch_size: int, seed: int = 0) -> Limited:
        """Up to `per_class` training images of every class, with the evaluation transforms (probes fitted on
        training data, as LayerPrune's imprinting is)."""
        from sglp.data.batches import class_balanced_indices

        labels = torch.tensor([self.train_set.targets[i] for i in self.train_indices])
        chosen = [self.train_indices[i] for i in class_balanced_indices(labels, per_class, seed).tolist()]
        return Limited(self._loader(self.calib_set, chosen, batch_size, None, False), None)

    def test_batches(self, batch_size: int = 500, max_batches: int | None = None) -> Limited:
        test = list(range(len(self.test_set)))
        return Limited(self._loader(self.test_set, test, batch_size, None, False), max_batches)
