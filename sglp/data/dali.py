"""NVIDIA DALI pipelines: ImageFolder data (decode, crop, flip, normalise on the GPU with `mixed` decoding) and
in-memory uint8 datasets such as CIFAR (pad + random crop, flip, normalise on the GPU).

The same pipelines run on the CPU (`dali_device="cpu"`): that is how they are tested without a GPU. Samples are
read in the order FolderSplits gives (so DALI and torch loaders see the same images in the same order); the
augmentation draws from DALI's own seeded generator. Batches come out as (x float32 NCHW normalised, y int64).
"""

from __future__ import annotations

import math

import torch

from sglp.core.errors import InvalidArgument

DALI_DEVICES = ("auto", "gpu", "cpu")


def dali_backend(device: str = "auto") -> str | None:
    """ "gpu" or "cpu" for the pipelines; None when `auto` finds no GPU (the caller falls back to torch)."""
    if device not in DALI_DEVICES:
        raise InvalidArgument(f"dali_device={device!r}: choose one of {DALI_DEVICES}")
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else None
    if device == "gpu" and not torch.cuda.is_available():
        raise InvalidArgument("dali_device=gpu needs CUDA; use dali_device=auto (falls back to torch) or cpu")
    return device


class DaliBatches:
    """One pass over `files` (with `labels`) in the given order, as (x, y) batches from a DALI pipeline."""

    def __init__(self, files, labels, batch_size, train, image_size, resize, mean, std, backend, threads, seed,
                 drop_last):  # fmt: skip
        self.files, self.labels, self.batch_size = list(files), list(labels), batch_size
        self.train, self.image_size, self.resize, self.mean, self.std = train, image_size, resize, mean, std
        self.backend, self.threads, self.seed, self.drop_last = backend, threads, seed, drop_last

    def __len__(self) -> int:
        n = len(self.files)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _pipeline(self):
        from nvidia.dali import fn, pipeline_def, types

        gpu = self.backend == "gpu"

        @pipeline_def(
            batch_size=self.batch_size,
            num_threads=max(1, self.threads),
            device_id=torch.cuda.current_device() if gpu else None,
            seed=(self.seed or 0) % (2**31),
        )
        def pipe():
            jpegs, labels = fn.readers.file(
                files=self.files, labels=self.labels, random_shuffle=False, name="Reader", pad_last_batch=False
            )
            images = fn.decoders.image(jpegs, device="mixed" if gpu else "cpu", output_type=types.RGB)
            mean = [255.0 * m for m in self.mean]
            std = [255.0 * s for s in self.std]
            if self.train:
                images = fn.random_resized_crop(images, size=[self.image_size, self.image_size])
                images = fn.crop_mirror_normalize(
                    images, dtype=types.FLOAT, output_layout="CHW", mean=mean, std=std, mirror=fn.random.coin_flip()
                )
            else:
                images = fn.resize(images, resize_shorter=self.resize)
                images = fn.crop_mirror_normalize(
                    images, dtype=types.FLOAT, output_layout="CHW", crop=(self.image_size, self.image_size),
                    mean=mean, std=std,
                )  # fmt: skip
            return images, labels

        p = pipe()
        p.build()
        return p

    def __iter__(self):
        from nvidia.dali.plugin.base_iterator import LastBatchPolicy
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        policy = LastBatchPolicy.DROP if self.drop_last else LastBatchPolicy.PARTIAL
        for out in DALIGenericIterator([self._pipeline()], ["x", "y"], reader_name="Reader", last_batch_policy=policy):
            yield out[0]["x"], out[0]["y"].reshape(-1).long()


class DaliLoaders:
    """Builds DaliBatches for a FolderSplits' datasets."""

    def __init__(self, splits, backend: str, threads: int) -> None:
        self.splits, self.backend, self.threads = splits, backend, threads

    def loader(self, dataset, indices: list[int], batch_size: int, seed: int | None, drop_last: bool) -> DaliBatches:
        samples = [dataset.samples[i] for i in indices]
        train = dataset is self.splits.train_set
        return DaliBatches(
            [f for f, _ in samples], [c for _, c in samples], batch_size, train, self.splits.image_size,
            self.splits.resize, self.splits.mean, self.splits.std, self.backend, self.threads, seed, drop_last,
        )  # fmt: skip


class DaliArrayBatches:
    """The batches of a `sglp.data.batches.Batches` (same sample order) with augmentation and normalisation done by
    a DALI pipeline fed from memory: zero-pad by `crop_pad`, random crop back to size, random flip."""

    def __init__(self, batches, backend: str, threads: int = 2) -> None:
        self.b, self.backend, self.threads = batches, backend, threads

    def __len__(self) -> int:
        return len(self.b)

    def _pipeline(self, source):
        from nvidia.dali import fn, pipeline_def, types

        gpu = self.backend == "gpu"
        b = self.b
        _, c, h, w = b.images.shape

        @pipeline_def(
            batch_size=b.batch_size,
            num_threads=max(1, self.threads),
            device_id=torch.cuda.current_device() if gpu else None,
            seed=(b.seed * 100_003 + b.epoch) % (2**31),
        )
        def pipe():
            images, labels = fn.external_source(source=source, num_outputs=2, batch=True, layout=["HWC", ""])
            if gpu:
                images = images.gpu()
            mean = [255.0 * m for m in b.mean]
            std = [255.0 * s for s in b.std]
            if b.augment and b.crop_pad:
                p = b.crop_pad
                images = fn.crop(images, crop=(h + 2 * p, w + 2 * p), out_of_bounds_policy="pad", fill_values=0)
            if b.augment:
                images = fn.crop_mirror_normalize(
                    images, dtype=types.FLOAT, output_layout="CHW", crop=(h, w), mean=mean, std=std,
                    crop_pos_x=fn.random.uniform(range=(0.0, 1.0)), crop_pos_y=fn.random.uniform(range=(0.0, 1.0)),
                    mirror=fn.random.coin_flip() if b.flip else 0,
                )  # fmt: skip
            else:
                images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", mean=mean, std=std)
            return images, labels

        p = pipe()
        p.build()
        return p

    def __iter__(self):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        b = self.b
        order = b.order(b.generator())
        hwc = b.images.permute(0, 2, 3, 1).contiguous().numpy()  # DALI takes densely packed HWC samples
        labels = b.labels.numpy()
        chunks = [order[i * b.batch_size : (i + 1) * b.batch_size].numpy() for i in range(len(b))]

        def source():
            for idx in chunks:
                yield [hwc[i] for i in idx], [labels[i : i + 1] for i in idx]

        for out in DALIGenericIterator([self._pipeline(source())], ["x", "y"], size=-1):
            yield out[0]["x"], out[0]["y"].reshape(-1).long()
