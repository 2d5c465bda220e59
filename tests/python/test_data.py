"""exitnet.data: IDX and CIFAR readers against files written here with numpy/struct, splits."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from exitnet import data


def _write_idx(path, arr, compress=False):
    arr = np.asarray(arr)
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[arr.dtype]
    raw = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()
    if compress:
        raw = gzip.compress(raw)
    with open(path, "wb") as f:
        f.write(raw)
    return raw


def _mnist_dir(tmp_path, n_train=40, n_test=20, compress=True, size=6):
    rng = np.random.default_rng(0)
    xtr = rng.integers(0, 256, (n_train, size, size), dtype=np.uint8)
    ytr = (np.arange(n_train) % 10).astype(np.uint8)
    xte = rng.integers(0, 256, (n_test, size, size), dtype=np.uint8)
    yte = (np.arange(n_test) % 10).astype(np.uint8)
    ext = ".gz" if compress else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", xtr, compress)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{ext}", ytr, compress)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}", xte, compress)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{ext}", yte, compress)
    return xtr, ytr, xte, yte


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_roundtrip(tmp_path, compress):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a", a, compress)
    np.testing.assert_array_equal(data.load_idx(tmp_path / "a"), a)
    b = np.array([[1, -2], [3, 70000]], dtype=">i4")
    _write_idx(tmp_path / "b", b, compress)
    np.testing.assert_array_equal(data.load_idx(tmp_path / "b"), b.astype(np.int32))


def test_load_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="path: .*does not exist"):
        data.load_idx(tmp_path / "nope")
    raw = _write_idx(tmp_path / "a", np.zeros((5, 4, 4), np.uint8))
    (tmp_path / "t").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match="truncated"):
        data.load_idx(tmp_path / "t")
    (tmp_path / "h").write_bytes(raw[:7])
    with pytest.raises(ValueError, match="truncated"):
        data.load_idx(tmp_path / "h")
    (tmp_path / "g").write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(ValueError, match="truncated or corrupt gzip"):
        data.load_idx(tmp_path / "g")
    (tmp_path / "m").write_bytes(b"\x01\x02\x08\x01" + raw[4:])
    with pytest.raises(ValueError, match="not an IDX"):
        data.load_idx(tmp_path / "m")


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_splits(tmp_path, compress):
    xtr, ytr, xte, yte = _mnist_dir(tmp_path, compress=compress)
    s = data.mnist(tmp_path, val_fraction=0.25, seed=3)
    assert (len(s.train), len(s.val), len(s.test)) == (30, 10, 20)
    assert s.input_shape == (1, 6, 6) and s.num_classes == 10
    ids = torch.cat([s.train.tensors[2], s.val.tensors[2]]).numpy()
    assert sorted(ids) == list(range(40))  # a partition of the training file
    # standardisation: mean/std of the training split, applied to every split
    raw_tr = xtr[s.train.tensors[2].numpy()].astype(np.float64) / 255
    assert s.mean == pytest.approx(raw_tr.mean(), rel=1e-5)
    assert s.std == pytest.approx(raw_tr.std(), rel=1e-5)
    for ds, x, y in ((s.train, xtr, ytr), (s.val, xtr, ytr), (s.test, xte, yte)):
        idx = ds.tensors[2].numpy()
        ref = (x[idx].astype(np.float64) / 255 - s.mean) / s.std
        np.testing.assert_allclose(ds.tensors[0][:, 0].numpy(), ref, atol=1e-5)
        np.testing.assert_array_equal(ds.tensors[1].numpy(), y[idx])
    s2 = data.mnist(tmp_path, val_fraction=0.25, seed=3)
    assert torch.equal(s.val.tensors[2], s2.val.tensors[2])
    s3 = data.mnist(tmp_path, val_fraction=0.25, seed=4)
    assert not torch.equal(s.val.tensors[2], s3.val.tensors[2])
    sub = data.mnist(tmp_path, train_subset=12, test_subset=5)
    assert len(sub.train) == 12 and len(sub.test) == 5


def test_mnist_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="root"):
        data.mnist(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="train-images"):
        data.mnist(tmp_path)
    _mnist_dir(tmp_path, compress=False)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(ValueError, match="truncated"):
        data.mnist(tmp_path)
    with pytest.raises(ValueError, match="val_fraction"):
        data.mnist(tmp_path, val_fraction=1.5)


def test_digits_default():
    from sklearn.datasets import load_digits
    s = data.digits(seed=0)
    assert s.input_shape == (1, 8, 8)
    assert len(s.train) + len(s.val) + len(s.test) == 1797
    d = load_digits()
    for ds in (s.train, s.val, s.test):
        idx = ds.tensors[2].numpy()
        np.testing.assert_array_equal(ds.tensors[1].numpy(), d.target[idx])
        ref = (d.images[idx] / 16.0 - s.mean) / s.std
        np.testing.assert_allclose(ds.tensors[0][:, 0].numpy(), ref, atol=1e-5)
    all_ids = np.concatenate([ds.tensors[2].numpy() for ds in (s.train, s.val, s.test)])
    assert len(set(all_ids)) == 1797


def _cifar_dir(tmp_path, n=6):
    rng = np.random.default_rng(1)
    batches = []
    for i in (1, 2):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        with open(tmp_path / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"batch_label": b"x", b"labels": y, b"data": x, b"filenames": [b"a"] * n}, f, protocol=2)
        batches.append((x, y))
    xt = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    yt = [int(v) for v in rng.integers(0, 10, n)]
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"labels": yt, b"data": xt}, f, protocol=2)
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f, protocol=2)
    return batches, (xt, yt)


def test_cifar10_python_batches(tmp_path):
    batches, (xt, yt) = _cifar_dir(tmp_path)
    s = data.cifar10(tmp_path, val_fraction=0.25)
    assert s.input_shape == (3, 32, 32) and s.class_names[3] == "c3"
    xall = np.concatenate([b[0] for b in batches]).reshape(-1, 3, 32, 32)
    yall = np.concatenate([b[1] for b in batches])
    idx = s.train.tensors[2].numpy()
    np.testing.assert_allclose(s.train.tensors[0].numpy(), (xall[idx] / 255 - s.mean) / s.std, atol=1e-5)
    np.testing.assert_array_equal(s.train.tensors[1].numpy(), yall[idx])
    np.testing.assert_array_equal(s.test.tensors[1].numpy(), yt)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_restricted_unpickler_refuses_globals(tmp_path):
    _cifar_dir(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"labels": [1], b"data": _Evil()}, f, protocol=2)
    with pytest.raises(ValueError, match="forbidden global"):
        data.cifar10(tmp_path)
    p = tmp_path / "data_batch_1"
    _cifar_dir(tmp_path)
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated"):
        data.cifar10(tmp_path)


def test_cifar100(tmp_path):
    rng = np.random.default_rng(2)
    for name, n in (("train", 8), ("test", 4)):
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": list(range(n)), b"coarse_labels": [i % 20 for i in range(n)]}, f)
    s = data.cifar100(tmp_path, val_fraction=0.0)
    assert s.num_classes == 100 and len(s.train) == 8 and len(s.val) == 0
    assert sorted(s.train.tensors[1].tolist()) == list(range(8))
    assert data.cifar100(tmp_path, coarse=True).num_classes == 20


def test_load_by_name_errors():
    with pytest.raises(ValueError, match="unknown data set 'imagenet'.*digits"):
        data.load("imagenet")


@pytest.mark.skipif(not data.fashion_mnist_available(),
                    reason=f"Fashion-MNIST not found at {data.data_root()} (set EXITNET_DATA or install Debian's dataset-fashion-mnist)")
def test_fashion_mnist_installed():
    s = data.fashion_mnist(train_subset=100, test_subset=50)
    assert s.input_shape == (1, 28, 28) and len(s.train) == 100 and len(s.test) == 50
    assert s.class_names[0] == "T-shirt/top"


def test_exitnet_data_environment_variable(tmp_path, monkeypatch):
    """EXITNET_DATA=<dir> makes <dir>/fashion-mnist the default location (and the only one)."""
    (tmp_path / "fashion-mnist").mkdir()
    _mnist_dir(tmp_path / "fashion-mnist")
    monkeypatch.setenv("EXITNET_DATA", str(tmp_path))
    assert data.data_root() == str(tmp_path / "fashion-mnist")
    assert data.fashion_mnist_available()
    s = data.fashion_mnist(val_fraction=0.25)
    assert len(s.test) == 20 and s.input_shape[-1] == 6
    monkeypatch.setenv("EXITNET_DATA", str(tmp_path / "empty"))
    assert not data.fashion_mnist_available()  # the system copy is not consulted
    with pytest.raises(FileNotFoundError, match="root"):
        data.fashion_mnist()
    assert data.data_root(root=tmp_path / "x") == str(tmp_path / "x")  # the argument wins
