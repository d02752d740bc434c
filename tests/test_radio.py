"""Radio datasets read tiny files written here in their real on-disk formats; CNN1D units."""

import pickle

import h5py
import numpy as np
import pytest
import torch

from sglp.core.errors import DataNotFoundError
from sglp.core.surgery import remove_layers
from sglp.core.units import prunable_units
from sglp.data.radio import RML2018_CLASSES, load_rml2016, load_rml2018
from sglp.kinds.classification.models.cnn1d import cnn1d

MODS = ["QPSK", "8PSK", "AM-DSB", "BPSK", "WBFM"]


def write_rml2016(path, per_key: int = 4, snrs=(-2, 0, 2)) -> dict:
    """A small RML2016.10a-format pickle: {(mod, snr): float32 (per_key, 2, 128)}, values encode (mod, snr, i)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = {}
    for m, mod in enumerate(MODS):
        for snr in snrs:
            arr = np.zeros((per_key, 2, 128), dtype=np.float32)
            arr[:, 0, 0] = m
            arr[:, 0, 1] = snr
            arr[:, 1, :] = np.arange(per_key, dtype=np.float32)[:, None]
            table[(mod, snr)] = arr
    with open(path, "wb") as f:
        pickle.dump(table, f, protocol=2)  # the release is a Python-2 pickle
    return table


def test_rml2016_reads_the_pickle_with_sorted_class_ids(tmp_path):
    write_rml2016(tmp_path / "RML2016.10a_dict.pkl", per_key=4)
    s = load_rml2016(tmp_path, test_fraction=0.25, calib_size=6, split_seed=0)
    assert s.classes == sorted(MODS) and s.num_classes == 5 and s.input_shape == (2, 128)
    n = 5 * 3 * 4
    assert len(s.train_y) + len(s.calib_y) + len(s.test_y) == n and len(s.test_y) == 15 and len(s.calib_y) == 6
    x = torch.cat([s.train_x, s.calib_x, s.test_x])
    y = torch.cat([s.train_y, s.calib_y, s.test_y])
    for xi, yi in zip(x, y):  # each example's label is its modulation's index in the sorted names
        assert s.classes[int(yi)] == MODS[int(xi[0, 0])]
    ids = {(int(a[0, 0]), int(a[0, 1]), int(a[1, 0])) for a in x}
    assert len(ids) == n  # every example exactly once across the splits
    high = load_rml2016(tmp_path, test_fraction=0.25, calib_size=6, min_snr=0)
    assert len(high.train_y) + len(high.calib_y) + len(high.test_y) == 5 * 2 * 4
    batch_x, batch_y = next(iter(s.calib_batches(3)))
    assert batch_x.shape == (3, 2, 128) and batch_y.shape == (3,)


def write_rml2018(path, n: int = 48) -> None:
    """A small RML2018.01a-format HDF5: X (n, 1024, 2), Y one-hot (n, 24), Z (n, 1) SNR."""
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.arange(n) % 24
    x = np.zeros((n, 1024, 2), dtype=np.float32)
    x[:, 0, 0] = labels
    x[:, 1, 1] = np.arange(n)
    with h5py.File(path, "w") as f:
        f["X"] = x
        f["Y"] = np.eye(24, dtype=np.int64)[labels]
        f["Z"] = (np.arange(n) % 4 * 10 - 10)[:, None]


def test_rml2018_reads_the_hdf5_file_transposed(tmp_path):
    write_rml2018(tmp_path / "rml2018.01a" / "GOLD_XYZ_OSC.0001_1024.hdf5", n=48)
    s = load_rml2018(tmp_path, test_fraction=0.25, calib_size=6, max_examples=None)
    assert s.input_shape == (2, 1024) and s.classes == RML2018_CLASSES and s.num_classes == 24
    x = torch.cat([s.train_x, s.calib_x, s.test_x])
    y = torch.cat([s.train_y, s.calib_y, s.test_y])
    assert sorted(int(a[1, 1]) for a in x) == list(range(48))
    assert all(int(a[0, 0]) == int(b) for a, b in zip(x, y))  # labels from the one-hot Y, I/Q on axis 1
    sub = load_rml2018(tmp_path, test_fraction=0.25, calib_size=6, max_examples=20, split_seed=3)
    assert len(sub.train_y) + len(sub.calib_y) + len(sub.test_y) == 20
    hi = load_rml2018(tmp_path, test_fraction=0.25, calib_size=6, min_snr=10, max_examples=None)
    ids = torch.cat([hi.train_x, hi.calib_x, hi.test_x])[:, 1, 1].long()
    assert sorted(ids.tolist()) == [i for i in range(48) if i % 4 * 10 - 10 >= 10]


def test_missing_radio_files_say_where_to_get_them(tmp_path):
    with pytest.raises(DataNotFoundError, match="deepsig"):
        load_rml2016(tmp_path)
    with pytest.raises(DataNotFoundError, match="rml2018.01a"):
        load_rml2018(tmp_path)


def test_cnn1d_units_are_the_conv_layers_and_remove_for_real():
    torch.manual_seed(0)
    net = cnn1d(11, 2).eval()
    units = prunable_units(net)
    assert len(units) == 9 and all(n.startswith("features.conv") for n, _ in units)
    pruned = remove_layers(net, [0, 4, 8])
    assert len(prunable_units(pruned)) == 6
    x = torch.randn(3, 2, 128)
    assert pruned(x).shape == (3, 11)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in net.parameters())


def test_signal_arrays_from_npz_and_hdf5(tmp_path):
    from sglp.data.radio import load_signal_arrays

    g = np.random.default_rng(0)
    x = g.normal(size=(30, 64, 2)).astype(np.float32)  # (N, L, 2): transposed on load
    y = np.arange(30) % 3
    np.savez(tmp_path / "s.npz", X=x, Y=y, classes=np.array(["a", "b", "c"]))
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["X"] = x
        f["Y"] = np.eye(3)[y]
    for file in ("s.npz", "s.h5"):
        s = load_signal_arrays(tmp_path / file, test_fraction=0.2, calib_size=4)
        assert s.input_shape == (2, 64) and s.num_classes == 3
        xs = torch.cat([s.train_x, s.calib_x, s.test_x])
        ys = torch.cat([s.train_y, s.calib_y, s.test_y])
        for a, b in zip(xs, ys):  # every example with its own label
            j = int(np.flatnonzero(np.isclose(x[:, 0, 0], float(a[0, 0])))[0])
            assert int(b) == y[j] and torch.allclose(a, torch.from_numpy(x[j].T))
    assert load_signal_arrays(tmp_path / "s.npz", calib_size=4).classes == ["a", "b", "c"]
    with pytest.raises(DataNotFoundError, match="Convert"):
        load_signal_arrays(tmp_path / "missing.npz")
