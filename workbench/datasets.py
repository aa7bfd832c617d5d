"""Image-classification datasets for the workbench.

``load_dataset`` returns a :class:`DataBundle` with train and test splits and
the metadata a model needs (classes, channels, image size).

* ``"digits"`` -- scikit-learn's bundled 8x8 digits (1797 images, no download),
  split with a fixed, seeded, stratified split and returned as
  :class:`~torch.utils.data.TensorDataset` (the trainer's fast path).
* ``"cifar10"``, ``"cifar100"``, ``"mnist"``, ``"fashion_mnist"`` -- torchvision
  datasets with the standard per-channel normalisation. Their files are read
  from a data root (``root`` argument, else ``$WORKBENCH_DATA_ROOT``, else
  ``~/.cache/workbench/datasets``) and only downloaded when ``download=True``.
* ``"imagenet"`` -- ImageNet-1K (or any image-classification set laid out the same way) read
  with :class:`torchvision.datasets.ImageFolder` from ``<root>/imagenet/train/<class>/*`` and
  ``<root>/imagenet/val/<class>/*``, at 224x224 with the thesis' §5.3.2 transforms. It is never
  downloaded: the user places the folders there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from .knobs import check_int, check_number

__all__ = [
    "DATASETS",
    "DATA_ROOT_ENV",
    "DEFAULT_DATA_ROOT",
    "NORMALIZATION",
    "DataBundle",
    "as_tensors",
    "dataset_shape",
    "load_dataset",
    "resolve_root",
]

DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100", "mnist", "fashion_mnist", "imagenet")
"""Names accepted by :func:`load_dataset`."""

DATA_ROOT_ENV = "WORKBENCH_DATA_ROOT"
"""Environment variable that overrides the default data root."""

DEFAULT_DATA_ROOT = Path("~/.cache/workbench/datasets")
"""Data root used when neither ``root`` nor ``$WORKBENCH_DATA_ROOT`` is given (``~`` is expanded)."""

NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
"""Per-channel ``(mean, std)`` applied after ``ToTensor`` (pixels in [0, 1])."""

# name -> (torchvision class name, num_classes, in_channels, image_size)
_TORCHVISION_SPECS: dict[str, tuple[str, int, int, int]] = {
    "cifar10": ("CIFAR10", 10, 3, 32),
    "cifar100": ("CIFAR100", 100, 3, 32),
    "mnist": ("MNIST", 10, 1, 28),
    "fashion_mnist": ("FashionMNIST", 10, 1, 28),
}


def dataset_shape(name: str) -> tuple[int, int, int]:
    """``(classes, channels, image size)`` of a torchvision dataset of :data:`DATASETS`."""
    from .knobs import check_choice
    _, classes, channels, size = _TORCHVISION_SPECS[check_choice("dataset", name, list(_TORCHVISION_SPECS))]
    return classes, channels, size


@dataclass(frozen=True)
class DataBundle:
    """Train/test splits of one dataset plus the metadata a model needs.

    Attributes
    ----------
    name : str
        Canonical dataset name, one of :data:`DATASETS`.
    train, test : torch.utils.data.Dataset
        Map-style datasets yielding ``(x, y)`` with ``x`` a float32
        ``(C, H, W)`` tensor and ``y`` an integer class index.
    num_classes : int
        Number of classes.
    in_channels : int
        Number of image channels ``C``.
    image_size : int
        Image height (== width), or a signal's length.
    normalization : tuple or None
        Per-channel ``(mean, std)`` applied to both splits, computed on the training split, when
        the workbench computed it (a user's data, :mod:`workbench.userdata`).
    """

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def calibration(self, n: int, seed: int = 0) -> Dataset:
        """Random subset of the training split, e.g. for calibrating quantisation.

        Parameters
        ----------
        n : int
            Number of samples, ``1 <= n <= len(train)``.
        seed : int, default 0
            Seed of the permutation; the same seed gives the same subset.

        Returns
        -------
        torch.utils.data.Dataset
            A ``TensorDataset`` when ``train`` is one (keeps the fast path),
            otherwise a :class:`~torch.utils.data.Subset`.

        Raises
        ------
        ValueError
            If ``n`` is out of range.
        """
        size = len(self.train)  # type: ignore[arg-type]
        check_int("n", n, 1, size, note="calibration size, at most len(train)")
        gen = torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(size, generator=gen)[: int(n)]
        if isinstance(self.train, TensorDataset):
            return TensorDataset(*(t[idx] for t in self.train.tensors))
        return Subset(self.train, idx.tolist())


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the data root directory.

    Parameters
    ----------
    root : str or os.PathLike, optional
        Explicit root. When ``None``, ``$WORKBENCH_DATA_ROOT`` is used if set
        and non-empty, else :data:`DEFAULT_DATA_ROOT`.

    Returns
    -------
    pathlib.Path
        The root with ``~`` expanded (it need not exist).
    """
    if root is None:
        env = os.environ.get(DATA_ROOT_ENV)
        root = env if env else DEFAULT_DATA_ROOT
    return Path(root).expanduser()


def load_dataset(
    name: str = "digits",
    root: str | os.PathLike | None = None,
    *,
    download: bool = False,
    augment: bool = False,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> DataBundle:
    """Load a dataset by name.

    Parameters
    ----------
    name : str, default "digits"
        One of :data:`DATASETS` (case-insensitive; ``-`` may replace ``_``).
    root : str or os.PathLike, optional
        Data root for the torchvision datasets; see :func:`resolve_root`.
        Ignored for ``"digits"``.
    download : bool, default False
        Let torchvision download missing files into ``root``. Ignored for
        ``"digits"``; ImageNet is never downloaded (missing folders are an error).
    augment : bool, default False
        Random training-set augmentation. CIFAR: ``RandomCrop(32, padding=4)``
        + ``RandomHorizontalFlip``. MNIST/Fashion-MNIST: ``RandomCrop(28,
        padding=2)`` (no flips). ImageNet: ``RandomResizedCrop(224)`` +
        ``RandomHorizontalFlip`` (thesis §5.3.2); without ``augment`` its
        training images get the test transform. Unsupported, hence ignored,
        for the 8x8 ``"digits"``. The test split is never augmented.
    seed : int, default 0
        Seed of the ``"digits"`` train/test split (the torchvision datasets
        have fixed official splits).
    test_fraction : float, default 0.2
        Fraction of ``"digits"`` held out for testing, in (0, 1).

    Returns
    -------
    DataBundle

    Raises
    ------
    ValueError
        Unknown ``name`` or ``test_fraction`` outside (0, 1).
    FileNotFoundError
        The dataset files are missing under the root and ``download`` is False
        (for ImageNet: ``<root>/imagenet/train`` or ``<root>/imagenet/val`` is
        missing or holds no class folder).
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names are: {', '.join(DATASETS)}")
    frac = check_number("test_fraction", test_fraction, 0.0, 1.0, inclusive=(False, False), parse=True)
    if key == "digits":
        return _load_digits(seed=seed, test_fraction=frac)
    if key == "imagenet":
        return _load_imagenet(resolve_root(root), augment=augment)
    return _load_torchvision(key, resolve_root(root), download=download, augment=augment)


def as_tensors(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Materialise a dataset as ``(x, y)`` tensors.

    Parameters
    ----------
    ds : torch.utils.data.Dataset
        A ``TensorDataset`` (or a ``Subset`` of one), read directly, or any
        map-style dataset of ``(x, y)`` items, which are stacked.

    Returns
    -------
    x : torch.Tensor
        float32, shape ``(N, C, H, W)`` for images (a channel axis is added to items of shape
        ``(H, W)``), or ``(N, C, L)`` for the signals a ``TensorDataset`` stores as such.
    y : torch.Tensor
        int64, shape ``(N,)``.

    Notes
    -----
    For a ``TensorDataset`` whose tensors already have these dtypes no copy is
    made: the results share memory with the dataset.
    """
    stored = True                # a TensorDataset's tensors keep their layout: (N, C, H, W) or (N, C, L)
    if isinstance(ds, TensorDataset):
        x, y = ds.tensors[0], ds.tensors[1]
    elif isinstance(ds, Subset) and isinstance(ds.dataset, TensorDataset):
        idx = torch.as_tensor(list(ds.indices), dtype=torch.long)
        x, y = ds.dataset.tensors[0][idx], ds.dataset.tensors[1][idx]
    else:
        stored = False
        n = len(ds)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("as_tensors: the dataset is empty")
        xs, ys = [], []
        for i in range(n):
            xi, yi = ds[i]
            xs.append(torch.as_tensor(xi))
            ys.append(torch.as_tensor(yi).reshape(()))
        x, y = torch.stack(xs), torch.stack(ys)
    x = x.to(torch.float32)
    if x.dim() == 3 and not stored:
        x = x.unsqueeze(1)
    if x.dim() not in (3, 4):
        raise ValueError(f"as_tensors: expected images of shape (C, H, W) or (H, W), got x of shape {tuple(x.shape)}")
    return x, y.to(torch.int64).reshape(-1)


# --------------------------------------------------------------------------- digits


def _load_digits(*, seed: int, test_fraction: float) -> DataBundle:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = np.asarray(digits.images, dtype=np.float64) / 16.0  # (N, 8, 8) in [0, 1]
    y = np.asarray(digits.target, dtype=np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, stratify=y, random_state=seed, test_size=test_fraction)
    mean, std = float(x_tr.mean()), float(x_tr.std())
    x_tr = (x_tr - mean) / std
    x_te = (x_te - mean) / std

    def tensors(a: np.ndarray, b: np.ndarray) -> TensorDataset:
        xt = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).unsqueeze(1)  # (N, 1, 8, 8)
        return TensorDataset(xt, torch.from_numpy(np.ascontiguousarray(b, dtype=np.int64)))

    # the normalisation maps pixel intensities ÷ 16 (in [0, 1]) to the network's inputs
    return DataBundle("digits", tensors(x_tr, y_tr), tensors(x_te, y_te), num_classes=10, in_channels=1, image_size=8,
                      normalization=((mean,), (std,)))


# --------------------------------------------------------------------------- torchvision


def _expected_files(cls: Any, root: Path) -> list[Path]:
    """Files torchvision needs for ``cls`` under ``root`` (without download)."""
    if hasattr(cls, "base_folder"):  # CIFAR10 / CIFAR100
        folder = root / cls.base_folder
        names = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return [folder / f for f in names]
    # MNIST family: the uncompressed idx files in <root>/<ClassName>/raw/
    raw = root / cls.__name__ / "raw"
    return [raw / os.path.splitext(os.path.basename(f))[0] for f, _ in cls.resources]


def _has_legacy_mnist(cls: Any, root: Path) -> bool:
    processed = root / cls.__name__ / "processed"
    return hasattr(cls, "training_file") and all(
        (processed / f).is_file() for f in (cls.training_file, cls.test_file)
    )


def _load_torchvision(key: str, root: Path, *, download: bool, augment: bool) -> DataBundle:
    import torchvision
    from torchvision import transforms as T

    cls_name, num_classes, channels, size = _TORCHVISION_SPECS[key]
    cls = getattr(torchvision.datasets, cls_name)

    if not download:
        missing = [p for p in _expected_files(cls, root) if not p.is_file()]
        if missing and not _has_legacy_mnist(cls, root):
            raise FileNotFoundError(
                f"dataset {key!r} not found in data root '{root}' (missing e.g. '{missing[0]}'). "
                f"Pass download=True (CLI: --download) to download it, or place the files there "
                f"(the root comes from the root argument, else ${DATA_ROOT_ENV}, else {DEFAULT_DATA_ROOT})."
            )

    mean, std = NORMALIZATION[key]
    base = [T.ToTensor(), T.Normalize(mean, std)]
    train_tf = base
    if augment:
        if channels == 3:
            train_tf = [T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(), *base]
        else:
            train_tf = [T.RandomCrop(size, padding=2), *base]

    try:
        train = cls(str(root), train=True, download=download, transform=T.Compose(train_tf))
        test = cls(str(root), train=False, download=download, transform=T.Compose(base))
    except RuntimeError as exc:
        raise RuntimeError(
            f"could not load dataset {key!r} from '{root}': {exc}. The files may be corrupted or "
            f"incomplete; delete them and pass download=True (CLI: --download), or replace them."
        ) from exc
    return DataBundle(key, train, test, num_classes=num_classes, in_channels=channels, image_size=size)


# --------------------------------------------------------------------------- imagenet

IMAGENET_SIZE = 224
"""Side of the square ImageNet crops fed to the network (thesis §5.3.2)."""


def _imagenet_transforms(augment: bool):
    """Thesis §5.3.2: train ``RandomResizedCrop(224)`` + horizontal flip, validation ``Resize(256)``
    + ``CenterCrop(224)``, both followed by the ImageNet normalisation."""
    from torchvision import transforms as T

    mean, std = NORMALIZATION["imagenet"]
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    test = T.Compose([T.Resize(256), T.CenterCrop(IMAGENET_SIZE), *tail])
    train = T.Compose([T.RandomResizedCrop(IMAGENET_SIZE), T.RandomHorizontalFlip(), *tail]) if augment else test
    return train, test


def _load_imagenet(root: Path, *, augment: bool) -> DataBundle:
    from torchvision.datasets import ImageFolder

    base = root / "imagenet"
    folders = {split: base / split for split in ("train", "val")}
    for folder in folders.values():
        if not folder.is_dir() or not any(p.is_dir() for p in folder.iterdir()):
            raise FileNotFoundError(
                f"dataset 'imagenet' not found: expected class folders in '{folders['train']}' and "
                f"'{folders['val']}' ('{folder}' is {'empty' if folder.is_dir() else 'missing'}), laid out as "
                f"torchvision's ImageFolder wants: <split>/<class name>/<image file>. ImageNet cannot be "
                f"downloaded automatically: place the folders there (the root comes from the root argument, "
                f"else ${DATA_ROOT_ENV}, else {DEFAULT_DATA_ROOT})."
            )
    train_tf, test_tf = _imagenet_transforms(augment)
    try:
        train = ImageFolder(str(folders["train"]), transform=train_tf)
        test = ImageFolder(str(folders["val"]), transform=test_tf)
    except (FileNotFoundError, RuntimeError) as exc:
        raise FileNotFoundError(f"could not read dataset 'imagenet' from '{base}': {exc}") from exc
    if train.classes != test.classes:
        only_train = sorted(set(train.classes) - set(test.classes))[:5]
        only_val = sorted(set(test.classes) - set(train.classes))[:5]
        raise ValueError(
            f"dataset 'imagenet' in '{base}': train and val must have the same class folders "
            f"(only in train: {only_train}, only in val: {only_val})"
        )
    return DataBundle("imagenet", train, test, num_classes=len(train.classes), in_channels=3, image_size=IMAGENET_SIZE)
