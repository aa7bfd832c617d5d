"""Tests for ``workbench.datasets``.

The torchvision datasets are exercised on tiny files written in torchvision's
exact on-disk formats into ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import struct

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from workbench.datasets import DATASETS, DataBundle, as_tensors, load_dataset

# --------------------------------------------------------------------------- helpers


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _cifar_image(rng: np.random.Generator) -> np.ndarray:
    """One CIFAR row: 3072 uint8, channel-major (R plane, G plane, B plane), each 32x32 row-major."""
    return rng.integers(0, 256, size=3072, dtype=np.uint8)


# Known pixels written into the FIRST train image and the FIRST test image:
# (flat index into the 3072 row, channel, h, w, uint8 value)
_CIFAR_PIXELS = [
    (0 * 1024 + 0 * 32 + 0, 0, 0, 0, 255),
    (1 * 1024 + 3 * 32 + 5, 1, 3, 5, 0),
    (2 * 1024 + 31 * 32 + 31, 2, 31, 31, 128),
]


def _write_cifar(root, monkeypatch, *, hundred: bool):
    """Write a tiny CIFAR-10 (5 x 2 train, 4 test) or CIFAR-100 (6 train, 3 test) in torchvision's format.

    Returns ``(train_labels, test_labels)``.

    torchvision 0.29 checks the md5 of every batch file in ``CIFAR10._check_integrity``
    and of the meta file in ``CIFAR10._load_meta`` against checksums hard-coded as
    class attributes (``train_list``, ``test_list``, ``meta``). Our tiny files cannot
    match the real checksums, so -- unavoidably -- we monkeypatch those class
    attributes with the md5s of the files written here. The integrity check itself
    (``torchvision.datasets.utils.check_integrity``) still runs unmodified.
    """
    import torchvision.datasets as tvd

    rng = np.random.default_rng(1234)
    cls = tvd.CIFAR100 if hundred else tvd.CIFAR10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    label_key = "fine_labels" if hundred else "labels"
    n_classes = 100 if hundred else 10

    def batch(name: str, n: int, first_label: int) -> list[int]:
        data = np.stack([_cifar_image(rng) for _ in range(n)])
        for flat, _c, _h, _w, v in _CIFAR_PIXELS:
            data[0, flat] = v
        labels = [(first_label + 7 * i) % n_classes for i in range(n)]
        files = [f"{name}_{i}.png" for i in range(n)]
        entry = {"batch_label": name, label_key: labels, "data": data, "filenames": files}
        if hundred:
            entry["coarse_labels"] = [lab // 5 for lab in labels]
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        return labels

    if hundred:
        train_labels = batch("train", 6, first_label=93)
        test_labels = batch("test", 3, first_label=99)
        meta_name, meta_key = "meta", "fine_label_names"
        meta = {
            "fine_label_names": [f"fine{i}" for i in range(100)],
            "coarse_label_names": [f"coarse{i}" for i in range(20)],
        }
    else:
        train_labels = []
        for b in range(1, 6):
            train_labels += batch(f"data_batch_{b}", 2, first_label=b)
        test_labels = batch("test_batch", 4, first_label=9)
        meta_name, meta_key = "batches.meta", "label_names"
        meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": 2, "num_vis": 3072}
    with open(folder / meta_name, "wb") as f:
        pickle.dump(meta, f, protocol=2)

    # See docstring: replace the hard-coded checksums by those of our tiny files.
    monkeypatch.setattr(cls, "train_list", [[n, _md5(folder / n)] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, _md5(folder / n)] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {"filename": meta_name, "key": meta_key, "md5": _md5(folder / meta_name)})
    return train_labels, test_labels


def _write_idx(path, arr: np.ndarray) -> None:
    """Write a uint8 array in the big-endian IDX format (magic 0x08 = ubyte, then ndim)."""
    header = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes())


_MNIST_PIXEL = (5, 7, 255)  # (h, w, value) of image 0 in both splits


def _write_mnist(root, folder: str, n_train: int = 6, n_test: int = 4):
    """Write tiny uncompressed ``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``.

    torchvision 0.29's ``MNIST._check_exists`` only checks that these four
    uncompressed files exist (no md5, no ``.gz`` needed), so no patching is needed.
    """
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(42)
    labels = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        h, w, v = _MNIST_PIXEL
        imgs[0, h, w] = v
        imgs[0, 0, 0] = 0
        lab = np.array([(3 * i + (prefix == "t10k")) % 10 for i in range(n)], dtype=np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", imgs)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", lab)
        labels[prefix] = lab.tolist()
    return labels["train"], labels["t10k"]


# --------------------------------------------------------------------------- API basics


def test_dataset_names():
    assert DATASETS == ("digits", "cifar10", "cifar100", "mnist", "fashion_mnist", "imagenet")


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as exc:
        load_dataset("svhn")
    msg = str(exc.value)
    assert "svhn" in msg
    for name in DATASETS:
        assert name in msg


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_test_fraction_out_of_range(frac):
    with pytest.raises(ValueError, match=r"test_fraction.*\(0, 1\)"):
        load_dataset("digits", test_fraction=frac)


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_dataset("digits")


def test_digits_shapes_dtypes_meta(digits):
    assert isinstance(digits, DataBundle)
    assert (digits.name, digits.num_classes, digits.in_channels, digits.image_size) == ("digits", 10, 1, 8)
    assert isinstance(digits.train, TensorDataset) and isinstance(digits.test, TensorDataset)
    for ds in (digits.train, digits.test):
        x, y = ds.tensors
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (1, 8, 8) and y.shape == (x.shape[0],)
        assert set(y.tolist()) == set(range(10))
    x0, y0 = digits.train[0]
    assert x0.shape == (1, 8, 8) and y0.dtype == torch.int64


@pytest.mark.parametrize("frac", [0.2, 0.5])
def test_digits_split_sizes(frac):
    b = load_dataset("digits", test_fraction=frac)
    n_test = math.ceil(1797 * frac)  # sklearn rounds the test size up
    assert len(b.test) == n_test
    assert len(b.train) == 1797 - n_test


def test_digits_stratified(digits):
    ytr = digits.train.tensors[1]
    yte = digits.test.tensors[1]
    ptr = torch.bincount(ytr, minlength=10).double() / len(ytr)
    pte = torch.bincount(yte, minlength=10).double() / len(yte)
    assert (ptr - pte).abs().max().item() < 0.02


def test_digits_deterministic_and_seeded(digits):
    again = load_dataset("digits", seed=0)
    for a, b in zip(digits.train.tensors + digits.test.tensors, again.train.tensors + again.test.tensors):
        assert torch.equal(a, b)
    other = load_dataset("digits", seed=1)
    assert len(other.test) == len(digits.test)
    assert not torch.equal(other.test.tensors[1], digits.test.tensors[1])


def test_digits_standardised_with_train_statistics(digits):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x = digits.train.tensors[0].double()
    assert abs(x.mean().item()) < 1e-5
    assert abs(x.std(unbiased=False).item() - 1.0) < 1e-4
    # The test split uses the TRAIN mean/std (a single scalar each), not its own.
    d = load_digits()
    raw_tr, raw_te = train_test_split(d.images / 16.0, stratify=d.target, random_state=0, test_size=0.2)
    expected = (raw_te - raw_tr.mean()) / raw_tr.std()
    assert np.allclose(digits.test.tensors[0].squeeze(1).numpy(), expected, atol=1e-5)
    assert abs(digits.test.tensors[0].mean().item()) > 1e-4  # really not re-standardised on its own


def test_calibration_subset(digits):
    cal = digits.calibration(50, seed=3)
    assert isinstance(cal, TensorDataset) and len(cal) == 50
    again = digits.calibration(50, seed=3)
    assert torch.equal(cal.tensors[0], again.tensors[0])
    other = digits.calibration(50, seed=4)
    assert not torch.equal(cal.tensors[0], other.tensors[0])
    # every calibration sample is a (distinct) training sample with its label
    xtr, ytr = digits.train.tensors
    match = (cal.tensors[0].flatten(1)[:, None, :] == xtr.flatten(1)[None, :, :]).all(-1)  # (50, Ntrain)
    assert match.any(1).all()
    rows = match.float().argmax(1)
    assert torch.equal(ytr[rows], cal.tensors[1])
    assert len(set(rows.tolist())) == 50
    assert len(digits.calibration(len(digits.train))) == len(digits.train)
    for bad in (0, -1, len(digits.train) + 1):
        with pytest.raises(ValueError, match="calibration"):
            digits.calibration(bad)


def test_as_tensors_tensordataset_and_generic(digits):
    x, y = as_tensors(digits.test)
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (len(digits.test), 1, 8, 8)
    assert torch.equal(x, digits.test.tensors[0]) and torch.equal(y, digits.test.tensors[1])

    class MapStyle(torch.utils.data.Dataset):  # plain map-style dataset: items are stacked
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.full((2, 4, 4), float(i), dtype=torch.float64), i + 1

    x, y = as_tensors(MapStyle())
    assert x.shape == (3, 2, 4, 4) and x.dtype == torch.float32
    assert torch.equal(x[:, 0, 0, 0], torch.tensor([0.0, 1.0, 2.0]))
    assert y.dtype == torch.int64 and y.tolist() == [1, 2, 3]

    sub = Subset(digits.test, [5, 2])
    xs, ys = as_tensors(sub)
    assert torch.equal(xs, digits.test.tensors[0][[5, 2]]) and torch.equal(ys, digits.test.tensors[1][[5, 2]])


# --------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("hundred", [False, True], ids=["cifar10", "cifar100"])
def test_cifar_loads_and_normalises(tmp_path, monkeypatch, hundred):
    train_labels, test_labels = _write_cifar(tmp_path, monkeypatch, hundred=hundred)
    name = "cifar100" if hundred else "cifar10"
    b = load_dataset(name, root=tmp_path)
    assert (b.name, b.num_classes, b.in_channels, b.image_size) == (name, 100 if hundred else 10, 3, 32)
    assert len(b.train) == len(train_labels) and len(b.test) == len(test_labels)

    xtr, ytr = as_tensors(b.train)
    xte, yte = as_tensors(b.test)
    assert xtr.shape == (len(train_labels), 3, 32, 32) and xtr.dtype == torch.float32
    assert ytr.tolist() == train_labels and yte.tolist() == test_labels
    assert ytr.dtype == torch.int64

    # Known pixels, normalised by hand: (v / 255 - mean_c) / std_c
    if hundred:
        mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    else:
        mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    for x in (xtr, xte):
        for _flat, c, h, w, v in _CIFAR_PIXELS:
            expected = (v / 255.0 - mean[c]) / std[c]
            assert x[0, c, h, w].item() == pytest.approx(expected, abs=1e-5)


def test_cifar_md5_is_really_checked(tmp_path, monkeypatch):
    """Without matching checksums torchvision rejects the files; we surface that clearly."""
    _write_cifar(tmp_path, monkeypatch, hundred=False)
    monkeypatch.undo()  # restore torchvision's real checksums
    with pytest.raises(RuntimeError, match=r"cifar10.*download=True"):
        load_dataset("cifar10", root=tmp_path)


def test_cifar_augment_changes_train_transform(tmp_path, monkeypatch):
    _write_cifar(tmp_path, monkeypatch, hundred=False)
    plain = load_dataset("cifar10", root=tmp_path)
    aug = load_dataset("cifar10", root=tmp_path, augment=True)

    torch.manual_seed(0)
    assert torch.equal(plain.train[0][0], plain.train[0][0])
    differs = []
    for s in range(5):
        torch.manual_seed(s)
        a, b = aug.train[0][0], aug.train[0][0]
        assert a.shape == (3, 32, 32)
        differs.append(not torch.equal(a, b))
    assert any(differs)
    names = [type(t).__name__ for t in aug.train.transform.transforms]
    assert "RandomCrop" in names and "RandomHorizontalFlip" in names
    assert aug.train[0][1] == plain.train[0][1]
    # the test split is never augmented
    assert torch.equal(aug.test[0][0], plain.test[0][0])
    assert torch.equal(aug.test[0][0], aug.test[0][0])


# --------------------------------------------------------------------------- MNIST / Fashion-MNIST


@pytest.mark.parametrize(
    "name, folder, mean, std",
    [("mnist", "MNIST", 0.1307, 0.3081), ("fashion_mnist", "FashionMNIST", 0.2860, 0.3530)],
)
def test_mnist_family_loads_and_normalises(tmp_path, name, folder, mean, std):
    train_labels, test_labels = _write_mnist(tmp_path, folder)
    b = load_dataset(name, root=tmp_path)
    assert (b.name, b.num_classes, b.in_channels, b.image_size) == (name, 10, 1, 28)
    assert len(b.train) == 6 and len(b.test) == 4
    xtr, ytr = as_tensors(b.train)
    xte, yte = as_tensors(b.test)
    assert xtr.shape == (6, 1, 28, 28) and xte.shape == (4, 1, 28, 28)
    assert xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert ytr.tolist() == train_labels and yte.tolist() == test_labels
    h, w, v = _MNIST_PIXEL
    for x in (xtr, xte):
        assert x[0, 0, h, w].item() == pytest.approx((v / 255.0 - mean) / std, abs=1e-5)
        assert x[0, 0, 0, 0].item() == pytest.approx((0.0 - mean) / std, abs=1e-5)

    cal = b.calibration(3, seed=1)
    assert isinstance(cal, Subset) and len(cal) == 3
    assert cal.indices == b.calibration(3, seed=1).indices


def test_mnist_augment(tmp_path):
    _write_mnist(tmp_path, "MNIST")
    aug = load_dataset("mnist", root=tmp_path, augment=True)
    differs = []
    for s in range(5):
        torch.manual_seed(s)
        differs.append(not torch.equal(aug.train[0][0], aug.train[0][0]))
    assert any(differs)
    assert torch.equal(aug.test[0][0], aug.test[0][0])


# --------------------------------------------------------------------------- missing files / root resolution


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "fashion_mnist"])
def test_missing_files_error(tmp_path, name):
    with pytest.raises(FileNotFoundError) as exc:
        load_dataset(name, root=tmp_path)
    msg = str(exc.value)
    assert name in msg
    assert str(tmp_path) in msg
    assert "download=True" in msg and "--download" in msg
    assert "place the files there" in msg
    assert not any(tmp_path.iterdir())  # nothing was created or downloaded


def test_partially_missing_cifar_is_reported(tmp_path, monkeypatch):
    _write_cifar(tmp_path, monkeypatch, hundred=False)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path)


def test_root_from_env_then_default(tmp_path, monkeypatch):
    _write_mnist(tmp_path / "env_root", "MNIST")
    monkeypatch.setenv("WORKBENCH_DATA_ROOT", str(tmp_path / "env_root"))
    assert len(load_dataset("mnist").train) == 6
    # an explicit root wins over the environment variable
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        load_dataset("mnist", root=tmp_path / "elsewhere")

    monkeypatch.delenv("WORKBENCH_DATA_ROOT")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError) as exc:
        load_dataset("mnist")
    assert str(tmp_path / "home" / ".cache" / "workbench" / "datasets") in str(exc.value)
