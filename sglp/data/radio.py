"""Radio modulation datasets (I/Q sequences) for CNN1D: RML2016.10a (pickle) and RML2018.01a (HDF5).

- RML2016.10a (O'Shea & West 2016): `RML2016.10a_dict.pkl`, a Python-2 pickle of a dict
  {(modulation: str, snr_db: int): float32 array (examples, 2, 128)}; 11 modulations x 20 SNRs x 1000.
  Class ids follow the sorted modulation names.
- RML2018.01a (O'Shea et al. 2018): `GOLD_XYZ_OSC.0001_1024.hdf5` with `X` (N, 1024, 2) float32 I/Q,
  `Y` (N, 24) one-hot classes, `Z` (N, 1) SNR in dB. 2.56 M examples (~21 GB as float32): `max_examples`
  reads a seeded random subset, row by row in sorted order, so memory stays bounded.

- Any other signal set, e.g. Sig2019-12 (Chen et al., SigNet, 2021; its release format is not documented
  where we could check): an `.npz` or HDF5 file of arrays `X` (N, 2, L) or (N, L, 2) and `Y` (N,) class ids or
  (N, C) one-hot, optional `classes` (`load_signal_arrays`).

The DeepSig sets come from https://www.deepsig.ai/datasets (free registration); nothing downloads them here.
Splits: a seeded `test_fraction` of the examples is the test set; `calib_size` examples of the rest are the
held-out calibration split (never trained on); `min_snr` keeps only examples at or above that SNR.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sglp.core.errors import DataNotFoundError, InvalidArgument

GET_IT = "Download it from https://www.deepsig.ai/datasets (free registration) and put the file in {where}."


@dataclass
class TensorBatches:
    """Seeded mini-batches over float tensors x (N, ...) and labels (N,); order depends on (seed, epoch) only."""

    x: torch.Tensor
    y: torch.Tensor
    batch_size: int
    shuffle: bool = False
    seed: int = 0
    epoch: int = 0
    max_batches: int | None = None
    drop_last: bool = False

    def __len__(self) -> int:
        n = len(self.y)
        full = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return min(full, self.max_batches) if self.max_batches is not None else full

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.y), generator=g) if self.shuffle else torch.arange(len(self.y))
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]


@dataclass
class SignalSplits:
    """Train / calibration / test splits of an in-memory signal dataset (same interface as ImageSplits)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    calib_x: torch.Tensor
    calib_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    classes: list[str]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def train_batches(self, batch_size: int, seed: int = 0, epoch: int = 0, max_batches: int | None = None):
        return TensorBatches(self.train_x, self.train_y, batch_size, True, seed, epoch, max_batches, drop_last=True)

    def calib_batches(self, batch_size: int, max_batches: int | None = None, seed: int = 0):
        return TensorBatches(self.calib_x, self.calib_y, batch_size, True, seed, 0, max_batches, drop_last=True)

    def test_batches(self, batch_size: int = 500, max_batches: int | None = None):
        return TensorBatches(self.test_x, self.test_y, batch_size, max_batches=max_batches)

    def train_per_class(self, per_class: int, batch_size: int, seed: int = 0):
        """Up to `per_class` training examples of every class (probes fitted on training data)."""
        from sglp.data.batches import class_balanced_indices

        idx = class_balanced_indices(self.train_y, per_class, seed)
        return TensorBatches(self.train_x[idx], self.train_y[idx], batch_size)


def split_signals(
    name: str, x: torch.Tensor, y: torch.Tensor, classes: list[str], test_fraction: float, calib_size: int, seed: int
) -> SignalSplits:
    """Seeded split into train / calibration / test."""
    n = len(y)
    n_test = int(round(test_fraction * n))
    if not 0 < n_test < n or not 0 < calib_size < n - n_test:
        raise InvalidArgument(
            f"{name}: cannot take test_fraction={test_fraction} and calib_size={calib_size} from {n} examples"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    test, calib, train = perm[:n_test], perm[n_test : n_test + calib_size], perm[n_test + calib_size :]
    return SignalSplits(name, x[train], y[train], x[calib], y[calib], x[test], y[test], len(classes), classes)


def _find(path: str | Path, folder: str, file: str) -> Path:
    for p in (Path(path) / folder / file, Path(path) / file):
        if p.is_file():
            return p
    raise DataNotFoundError(
        f"{file} not found under {path} (looked in {Path(path) / folder} and {path}). "
        + GET_IT.format(where=Path(path) / folder)
    )


def load_rml2016(
    path: str | Path = "data",
    file: str = "RML2016.10a_dict.pkl",
    test_fraction: float = 0.2,
    calib_size: int = 5000,
    split_seed: int = 1234,
    min_snr: int | None = None,
) -> SignalSplits:
    """RML2016.10a from its pickle (see the module docstring)."""
    found = _find(path, "rml2016.10a", file)
    with open(found, "rb") as f:
        table = pickle.load(f, encoding="latin1")  # a Python-2 pickle
    if not isinstance(table, dict) or not table:
        raise DataNotFoundError(f"{found} is not the RML2016.10a dict of (modulation, snr) -> examples")
    classes = sorted({mod.decode() if isinstance(mod, bytes) else mod for mod, _ in table})
    xs, ys = [], []
    for (mod, snr), arr in sorted(table.items(), key=lambda kv: (str(kv[0][0]), int(kv[0][1]))):
        if min_snr is not None and int(snr) < min_snr:
            continue
        mod = mod.decode() if isinstance(mod, bytes) else mod
        xs.append(np.asarray(arr, dtype=np.float32))
        ys.append(np.full(len(arr), classes.index(mod), dtype=np.int64))
    if not xs:
        raise InvalidArgument(f"min_snr={min_snr} leaves no RML2016.10a example")
    x, y = torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))
    return split_signals("rml2016.10a", x, y, classes, test_fraction, calib_size, split_seed)


RML2018_CLASSES = [
    "OOK",
    "4ASK",
    "8ASK",
    "BPSK",
    "QPSK",
    "8PSK",
    "16PSK",
    "32PSK",
    "16APSK",
    "32APSK",
    "64APSK",
    "128APSK",
    "16QAM",
    "32QAM",
    "64QAM",
    "128QAM",
    "256QAM",
    "AM-SSB-WC",
    "AM-SSB-SC",
    "AM-DSB-WC",
    "AM-DSB-SC",
    "FM",
    "GMSK",
    "OQPSK",
]  # the order of Y's columns in the DeepSig release


def load_rml2018(
    path: str | Path = "data",
    file: str = "GOLD_XYZ_OSC.0001_1024.hdf5",
    test_fraction: float = 0.2,
    calib_size: int = 5000,
    split_seed: int = 1234,
    min_snr: int | None = None,
    max_examples: int | None = 200_000,
) -> SignalSplits:
    """RML2018.01a from its HDF5 file; X is transposed to (N, 2, 1024). `max_examples=None` loads everything."""
    import h5py

    found = _find(path, "rml2018.01a", file)
    with h5py.File(found, "r") as f:
        if not {"X", "Y", "Z"} <= set(f.keys()):
            raise DataNotFoundError(f"{found} lacks the X/Y/Z datasets of RML2018.01a (has {sorted(f.keys())})")
        snr = f["Z"][:, 0]
        rows = np.flatnonzero(snr >= min_snr) if min_snr is not None else np.arange(len(snr))
        if max_examples is not None and len(rows) > max_examples:
            rng = np.random.default_rng(split_seed)
            rows = np.sort(rng.choice(rows, max_examples, replace=False))
        if not len(rows):
            raise InvalidArgument(f"min_snr={min_snr} leaves no RML2018.01a example")
        x = np.stack([f["X"][int(r)] for r in rows]) if len(rows) < len(snr) else f["X"][:]
        y = f["Y"][:][rows].argmax(1)
        columns = f["Y"].shape[1]
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1), dtype=np.float32))
    classes = RML2018_CLASSES if columns == len(RML2018_CLASSES) else [f"class{i}" for i in range(columns)]
    return split_signals(
        "rml2018.01a", x, torch.from_numpy(y.astype(np.int64)), classes, test_fraction, calib_size, split_seed
    )


def load_signal_arrays(
    path: str | Path,
    name: str = "signals",
    test_fraction: float = 0.2,
    calib_size: int = 5000,
    split_seed: int = 1234,
) -> SignalSplits:
    """A signal dataset from an `.npz` or HDF5 file with arrays X (N, 2, L) or (N, L, 2), Y (N,) or one-hot (N, C),
    and optionally `classes` (names). For datasets without a loader of their own, e.g. Sig2019-12 converted."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataNotFoundError(
            f"{name}: {path} not found. Convert the dataset to an .npz (numpy.savez) or HDF5 file with X (N, 2, L) "
            "I/Q arrays and Y labels (optional: classes), and set dataset.splits.path."
        )
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    else:
        import h5py

        with h5py.File(path, "r") as f:
            arrays = {k: f[k][()] for k in f.keys()}
    if "X" not in arrays or "Y" not in arrays:
        raise DataNotFoundError(f"{name}: {path} needs arrays X and Y (has {sorted(arrays)})")
    x, y = np.asarray(arrays["X"], dtype=np.float32), np.asarray(arrays["Y"])
    if x.ndim != 3 or 2 not in (x.shape[1], x.shape[2]):
        raise DataNotFoundError(f"{name}: X must be (N, 2, L) or (N, L, 2), got {x.shape}")
    if x.shape[1] != 2:
        x = x.transpose(0, 2, 1)
    y = y.argmax(1) if y.ndim == 2 else y
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in arrays.get("classes", [])]
    classes = classes or [f"class{i}" for i in range(int(y.max()) + 1)]
    x_t, y_t = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))
    return split_signals(name, x_t, y_t, classes, test_fraction, calib_size, split_seed)
