"""NVIDIA DALI pipelines for ImageFolder data: decode, crop, flip and normalise on the GPU (`mixed` decoding).

The same pipelines run on the CPU (`dali_device="cpu"`): that is how they are tested without a GPU. Samples are
read in the order FolderSplits gives (so DALI and torch loaders see the same images in the same order); the
augmentation draws from DALI's own seeded generator. Batches come out as (x float32 NCHW normalised, y int64).
"""

from __future__ import annotations

import math

import torch

from sglp.errors import InvalidArgument

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
        from sglp.data.image_folder import IMAGENET_MEAN, IMAGENET_STD

        samples = [dataset.samples[i] for i in indices]
        train = dataset is self.splits.train_set
        return DaliBatches(
            [f for f, _ in samples], [c for _, c in samples], batch_size, train, self.splits.image_size,
            self.splits.resize, IMAGENET_MEAN, IMAGENET_STD, self.backend, self.threads, seed, drop_last,
        )  # fmt: skip
