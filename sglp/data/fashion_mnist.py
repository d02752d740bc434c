"""Fashion-MNIST (Xiao et al., 2017) from its gzipped IDX files.

Looked for in this order: the configured `path` (flat, or torchvision's
`FashionMNIST/raw/` layout), Debian's `dataset-fashion-mnist` package
(`/usr/share/datasets/fashion-mnist`), then torchvision's download into `path`.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from sglp.core.errors import DataNotFoundError, InvalidArgument
from sglp.data.batches import ImageSplits

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MEAN, STD = (0.2860,), (0.3530,)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): big-endian header, then the raw array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # not gzip, or cut short
        raise DataNotFoundError(f"{path} cannot be read ({type(e).__name__}: {e}); delete it and fetch the data "
                                "again") from None  # fmt: skip
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in dtypes or len(data) < 4 + 4 * data[3]:
        raise DataNotFoundError(f"{path} is not an IDX file (bad magic number); delete it and fetch the data again")
    dtype = dtypes[data[2]]
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise DataNotFoundError(f"{path} is truncated ({arr.size} values, header says {shape}); fetch it again")
    return arr.reshape(shape)


def _find_file(stem: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        for name in (stem + ".gz", stem):
            if (d / name).is_file():
                return d / name
    return None


def find_fashion_mnist(path: str | Path | None, download: bool = True, search_system: bool = True) -> dict[str, Path]:
    """Paths of the four IDX files, or a DataNotFoundError saying how to get them."""
    dirs = []
    if path:
        d = Path(path).expanduser()
        dirs += [d, d / "fashion-mnist", d / "FashionMNIST" / "raw"]
    if search_system:
        dirs.append(DEBIAN_DIR)
    found = {k: _find_file(v, dirs) for k, v in FILES.items()}
    if all(found.values()):
        return found  # type: ignore[return-value]
    if download and path:
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(Path(path).expanduser()), train=True, download=True)
            FashionMNIST(str(Path(path).expanduser()), train=False, download=True)
            found = {k: _find_file(v, dirs) for k, v in FILES.items()}
            if all(found.values()):
                return found  # type: ignore[return-value]
        except Exception:  # noqa: BLE001 - any download failure ends in the message below
            pass
    raise DataNotFoundError(
        "Fashion-MNIST not found. Looked in: " + ", ".join(str(d) for d in dirs) + ". Fix: on Debian/Ubuntu run "
        "`sudo apt-get install dataset-fashion-mnist` (or `make data`), or put the four *-ubyte(.gz) IDX files "
        "in dataset.path, or allow torchvision to download them (internet access)."
    )


def load_fashion_mnist(
    path: str | None = "data",
    calib_size: int = 5000,
    split_seed: int = 1234,
    download: bool = True,
    search_system: bool = True,
    loader: str = "torch",
    dali_device: str = "auto",
) -> ImageSplits:
    """Fashion-MNIST as in-memory splits: 60k train files -> (60k - calib_size) train + calib; 10k test.

    `search_system=False` skips Debian's system location; `download=False` skips torchvision's download.
    `loader="dali"` serves the batches from DALI pipelines (GPU; `dali_device=cpu` for the CPU pipeline).
    """
    if loader not in ("torch", "dali"):
        raise InvalidArgument(f"dataset.splits.loader={loader!r}: choose torch or dali")
    paths = find_fashion_mnist(path, download, search_system)
    arrays = {k: read_idx(p) for k, p in paths.items()}

    def tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(arrays[f"{split}_images"].copy()).unsqueeze(1)
        return images, torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64))

    splits = ImageSplits.from_train_test(
        "fashion_mnist",
        tensors("train"),
        tensors("test"),
        calib_size,
        split_seed,
        num_classes=10,
        mean=MEAN,
        std=STD,
        crop_pad=2,
        flip=True,
    )
    return splits.use_dali(dali_device) if loader == "dali" else splits
