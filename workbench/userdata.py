"""Your own data: a ``.npz`` file, a folder of images, or a Python factory, as a :class:`DataBundle`.

``load_user_data(spec)`` reads, by the form of ``spec``:

* ``path/to/file.npz`` holding ``x_train, y_train, x_test, y_test`` (read with
  ``allow_pickle=False``: an object array is refused, never unpickled).  ``x`` is images
  ``(N, C, H, W)`` or ``(N, H, W, C)`` (C = 1, 3 or 4; the layout is read from where that axis
  is), signals ``(N, C, L)``, or one-channel signals ``(N, L)``; ``y`` integer labels ``0..K-1``;
* ``path/to/folder`` of class sub-folders of images: ``train/<class>/*`` and ``test/<class>/*``,
  or ``<class>/*`` split with a seeded, stratified split (every image the same size and mode);
* ``package.module:factory`` (a callable returning ``(train_dataset, test_dataset)`` of ``(x, y)``
  items) — code the user names on their own machine; a served page never reaches this;
* a name an installed package registers under the entry-point group ``workbench.datasets``
  (``[project.entry-points."workbench.datasets"] mine = "mypkg.data:mine"``), whose value is such a
  factory.

A factory's test split is never stacked: it stays a :class:`StreamedTestSet` (checked in one
item-by-item pass, normalised on access) that Monte-Carlo evaluation streams in batches.  A ``.npz``
is read whole (NumPy copies or decompresses each member into memory; mapping the members of an
uncompressed archive through their zip offsets is not done), and so is a folder of images (each
image is decoded into one array): a test set too large for memory belongs in a factory that builds
its items on access.

Everything is checked before any training: lengths, label range, NaN or infinite values, one
sample shape; a refusal is a :class:`~workbench.knobs.KnobError` naming the array and its shape.
Inputs are normalised per channel with the training split's mean and standard deviation, which
the bundle keeps (``normalization``) so that results can record them; :func:`data_digest` is the
SHA-256 of the files read, for the cache key's provenance.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .datasets import DataBundle
from .knobs import KnobError, check_number
from .plugins import DATA_GROUP, registered

__all__ = ["IMAGE_SUFFIXES", "NPZ_KEYS", "StreamedTestSet", "data_digest", "load_user_data", "read_test_npz",
           "user_data_kind"]

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def user_data_kind(spec: str) -> str:
    """``"npz"``, ``"folder"`` or ``"factory"``: how :func:`load_user_data` reads ``spec``."""
    if spec in registered(DATA_GROUP):
        return "factory"
    path = Path(spec).expanduser()
    if spec.endswith(".npz"):
        return "npz"
    if path.is_dir():
        return "folder"
    if ":" in spec and not path.exists():
        return "factory"
    raise KnobError(f"--data {spec!r} is neither a .npz file, a folder of class sub-folders, nor module:factory")


def load_user_data(spec: str, *, seed: int = 0, test_fraction: float = 0.2) -> DataBundle:
    """The data named by ``spec`` (see the module docstring), normalised with its training split."""
    kind = user_data_kind(spec)
    if kind == "npz":
        x_tr, y_tr, x_te, y_te = _read_npz(Path(spec).expanduser())
    elif kind == "folder":
        frac = check_number("test_fraction", test_fraction, 0.0, 1.0, inclusive=(False, False))
        x_tr, y_tr, x_te, y_te = _read_folder(Path(spec).expanduser(), seed, frac)
    else:
        x_tr, y_tr, x_te, y_te = _read_factory(spec)
    return _bundle(spec, x_tr, y_tr, x_te, y_te)


def data_digest(spec: str) -> str:
    """SHA-256 of the bytes ``spec`` reads (the file, or every image of the folder in order); a
    factory is named by its spec alone (its code is the user's)."""
    kind = user_data_kind(spec)
    if kind == "factory":
        return hashlib.sha256(spec.encode()).hexdigest()
    path = Path(spec).expanduser()
    files = [path] if kind == "npz" else sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if kind == "folder" else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- .npz
def _read_npz(path: Path):
    if not path.is_file():
        raise KnobError(f"--data {path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise KnobError(f"--data {path} is not a readable .npz archive ({exc})") from None
    with archive:
        missing = [k for k in NPZ_KEYS if k not in archive.files]
        if missing:
            raise KnobError(f"--data {path} lacks {', '.join(missing)}: a .npz must hold {', '.join(NPZ_KEYS)} "
                            f"(it holds {', '.join(archive.files) or 'nothing'})")
        arrays = {}
        for k in NPZ_KEYS:
            try:
                arrays[k] = archive[k]
            except ValueError:
                raise KnobError(f"--data {path}: {k} is an object array; arrays of numbers only "
                                "(object arrays would need unpickling, which is never done)") from None
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]


# --------------------------------------------------------------------------- image folders
def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def _read_images(dirs: list[Path], classes: list[str], where: Path):
    from PIL import Image
    xs, ys, first = [], [], None
    for d in dirs:
        label = classes.index(d.name)
        for f in sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            with Image.open(f) as im:
                im.load()
                if first is None:
                    first = (im.size, im.mode if im.mode in ("L", "RGB") else "RGB", f)
                if im.size != first[0]:
                    raise KnobError(f"--data {where}: {f} is {im.size[0]}×{im.size[1]} pixels but {first[2]} is "
                                    f"{first[0][0]}×{first[0][1]}: every image must have the same size")
                arr = np.asarray(im.convert(first[1]), dtype=np.float32) / 255.0
            xs.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
            ys.append(label)
    if not xs:
        raise KnobError(f"--data {where}: no image ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _read_folder(root: Path, seed: int, test_fraction: float):
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_dirs, test_dirs = _class_dirs(root / "train"), _class_dirs(root / "test")
        classes = sorted({d.name for d in train_dirs})
        stray = sorted({d.name for d in test_dirs} - set(classes))
        if stray:
            raise KnobError(f"--data {root}: test/ has classes train/ lacks: {', '.join(stray)}")
        x_tr, y_tr = _read_images(train_dirs, classes, root / "train")
        x_te, y_te = _read_images(test_dirs, classes, root / "test")
        return x_tr, y_tr, x_te, y_te
    dirs = _class_dirs(root)
    if len(dirs) < 2:
        raise KnobError(f"--data {root}: a folder of images needs train/ and test/, or at least two class folders")
    x, y = _read_images(dirs, [d.name for d in dirs], root)
    from sklearn.model_selection import train_test_split
    try:
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, stratify=y, random_state=seed, test_size=test_fraction)
    except ValueError as exc:
        raise KnobError(f"--data {root}: cannot split {len(y)} images into train and test ({exc})") from None
    return x_tr, y_tr, x_te, y_te


# --------------------------------------------------------------------------- factories
def _read_factory(spec: str):
    """The factory's training split stacked (training and its normalisation read it all) and its
    test split as given (a Dataset, streamed later: never stacked)."""
    module, _, name = registered(DATA_GROUP).get(spec, spec).partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise KnobError(f"--data {spec}: cannot import {name!r} from {module!r} ({exc})") from None
    out = factory()
    if not (isinstance(out, tuple) and len(out) == 2):
        raise KnobError(f"--data {spec}: the factory must return (train_dataset, test_dataset), got "
                        f"{type(out).__name__}")
    train_ds, test_ds = out
    items = [train_ds[i] for i in range(len(train_ds))]
    if not items:
        raise KnobError(f"--data {spec}: the train dataset is empty")
    x_tr = torch.stack([torch.as_tensor(i[0], dtype=torch.float32) for i in items]).numpy()
    y_tr = np.asarray([int(i[1]) for i in items])
    try:
        n_test = len(test_ds)
    except TypeError:
        raise KnobError(f"--data {spec}: the test dataset must be map-style, with a length") from None
    if n_test == 0:
        raise KnobError(f"--data {spec}: the test dataset is empty")
    return x_tr, y_tr, test_ds, None


class StreamedTestSet(torch.utils.data.Dataset):
    """A factory's test split read item by item, laid out as ``(C, H, W)`` / ``(C, L)`` float32
    and normalised with the training split's per-channel ``mean`` and ``std``: never stacked, so
    a Monte-Carlo evaluation streams it in batches (:func:`workbench.analysis.mc_evaluate`)."""

    def __init__(self, dataset, mean: np.ndarray, std: np.ndarray):
        self.dataset = dataset
        self.mean = torch.from_numpy(np.asarray(mean, dtype=np.float32))
        self.std = torch.from_numpy(np.asarray(std, dtype=np.float32))

    def __len__(self):
        return len(self.dataset)

    def raw(self, i: int) -> tuple[np.ndarray, int]:
        """Item ``i`` laid out, before normalisation, and its label."""
        x, y = self.dataset[i]
        return _layout("x_test", np.asarray(x)[None])[0], y

    def __getitem__(self, i):
        x, y = self.raw(i)
        return (torch.from_numpy(x) - self.mean) / self.std, int(y)


def _check_streamed_test(test: StreamedTestSet, sample_shape: tuple[int, ...], classes: int) -> None:
    """One pass over a streamed test split (one item in memory at a time): the checks
    :func:`_bundle` makes on arrays, before any training."""
    for i in range(len(test)):
        x, y = test.raw(i)
        if not np.issubdtype(x.dtype, np.number):
            raise KnobError(f"x_test item {i} has dtype {x.dtype}: pixels and samples must be numbers")
        if x.shape != sample_shape:
            raise KnobError(f"x_train samples are {sample_shape} but x_test item {i} is {x.shape}: "
                            "both splits must have one sample shape")
        bad = int((~np.isfinite(x)).sum())
        if bad:
            raise KnobError(f"x_test item {i} (shape {x.shape}) has {bad} NaN or infinite values: every value "
                            "must be finite")
        try:
            label = int(y)
        except (TypeError, ValueError):
            raise KnobError(f"y_test item {i} is {y!r}: labels are class indices 0..K-1") from None
        if label != y or not 0 <= label < classes:
            raise KnobError(f"y_test item {i} has label {y!r} but y_train's labels are 0..{classes - 1}: a test label "
                            f"must be an integer below the number of classes ({classes})")


# --------------------------------------------------------------------------- checks, layout, normalisation
def _layout(name: str, x: np.ndarray) -> np.ndarray:
    """``x`` as ``(N, C, H, W)`` or ``(N, C, L)`` float32."""
    if x.ndim == 2:
        x = x[:, None, :]
    elif x.ndim == 4 and x.shape[1] not in (1, 3, 4) and x.shape[3] in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim not in (3, 4):
        raise KnobError(f"{name} has shape {x.shape}: expected images (N, C, H, W) or (N, H, W, C), signals "
                        "(N, C, L) or (N, L)")
    return np.ascontiguousarray(x, dtype=np.float32)


def _labels(name: str, y: np.ndarray, n: int, x_name: str) -> np.ndarray:
    if y.ndim != 1:
        raise KnobError(f"{name} has shape {y.shape}: labels must be one integer per sample, shape ({n},)")
    if len(y) != n:
        raise KnobError(f"{name} has {len(y)} labels but {x_name} has {n} samples: the lengths must match")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
            raise KnobError(f"{name} has dtype {y.dtype} with non-integer values: labels are class indices 0..K-1")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise KnobError(f"{name} has a negative label ({int(y.min())}): labels are class indices 0..K-1")
    return y


def _bundle(spec: str, x_tr, y_tr, x_te, y_te) -> DataBundle:
    if y_te is None:               # a factory's test split: streamed, checked item by item
        return _streamed_bundle(spec, x_tr, y_tr, x_te)
    for name, x in (("x_train", x_tr), ("x_test", x_te)):
        if not np.issubdtype(np.asarray(x).dtype, np.number):
            raise KnobError(f"{name} has dtype {np.asarray(x).dtype}: pixels and samples must be numbers")
    x_tr, x_te = _layout("x_train", np.asarray(x_tr)), _layout("x_test", np.asarray(x_te))
    if len(x_tr) == 0 or len(x_te) == 0:
        raise KnobError(f"x_train has {len(x_tr)} and x_test {len(x_te)} samples: both splits need samples")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise KnobError(f"x_train samples are {x_tr.shape[1:]} but x_test samples are {x_te.shape[1:]}: "
                        "both splits must have one sample shape")
    for name, x in (("x_train", x_tr), ("x_test", x_te)):
        bad = int((~np.isfinite(x)).sum())
        if bad:
            raise KnobError(f"{name} (shape {x.shape}) has {bad} NaN or infinite values: every value must be finite")
    y_tr = _labels("y_train", np.asarray(y_tr), len(x_tr), "x_train")
    y_te = _labels("y_test", np.asarray(y_te), len(x_te), "x_test")
    classes = int(y_tr.max()) + 1
    if classes < 2:
        raise KnobError(f"y_train has a single class ({classes - 1}): a classifier needs at least two")
    if y_te.max() >= classes:
        raise KnobError(f"y_test has label {int(y_te.max())} but y_train's labels are 0..{classes - 1}: "
                        f"a test label must be below the number of classes ({classes})")
    axes = (0, 2, 3) if x_tr.ndim == 4 else (0, 2)
    mean = x_tr.mean(axis=axes, keepdims=True)
    std = x_tr.std(axis=axes, keepdims=True)
    std[std == 0] = 1.0
    shape = (1, -1) + (1,) * (x_tr.ndim - 2)
    x_tr = (x_tr - mean.reshape(shape)) / std.reshape(shape)
    x_te = (x_te - mean.reshape(shape)) / std.reshape(shape)
    tensors = [TensorDataset(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y))
               for x, y in ((x_tr, y_tr), (x_te, y_te))]
    return DataBundle(spec, tensors[0], tensors[1], num_classes=classes, in_channels=int(x_tr.shape[1]),
                      image_size=int(x_tr.shape[2]),
                      normalization=(tuple(mean.ravel().tolist()), tuple(std.ravel().tolist())))


def _streamed_bundle(spec: str, x_tr, y_tr, test_ds) -> DataBundle:
    if not np.issubdtype(np.asarray(x_tr).dtype, np.number):
        raise KnobError(f"x_train has dtype {np.asarray(x_tr).dtype}: pixels and samples must be numbers")
    x_tr = _layout("x_train", np.asarray(x_tr))
    bad = int((~np.isfinite(x_tr)).sum())
    if bad:
        raise KnobError(f"x_train (shape {x_tr.shape}) has {bad} NaN or infinite values: every value must be finite")
    y_tr = _labels("y_train", np.asarray(y_tr), len(x_tr), "x_train")
    classes = int(y_tr.max()) + 1
    if classes < 2:
        raise KnobError(f"y_train has a single class ({classes - 1}): a classifier needs at least two")
    axes = (0, 2, 3) if x_tr.ndim == 4 else (0, 2)
    mean = x_tr.mean(axis=axes, keepdims=True)
    std = x_tr.std(axis=axes, keepdims=True)
    std[std == 0] = 1.0
    test = StreamedTestSet(test_ds, mean[0], std[0])
    _check_streamed_test(test, tuple(x_tr.shape[1:]), classes)
    x_tr = (x_tr - mean) / std
    train = TensorDataset(torch.from_numpy(np.ascontiguousarray(x_tr, dtype=np.float32)), torch.from_numpy(y_tr))
    return DataBundle(spec, train, test, num_classes=classes, in_channels=int(x_tr.shape[1]),
                      image_size=int(x_tr.shape[2]),
                      normalization=(tuple(mean.ravel().tolist()), tuple(std.ravel().tolist())))


# --------------------------------------------------------------------------- a test set uploaded to a page
def read_test_npz(data: bytes, *, sample_shape: tuple[int, ...], num_classes: int,
                  normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
                  name: str = "the uploaded file", max_samples: int = 20_000) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of a ``.npz`` test set held in ``data`` (bytes a page received): ``x_test`` and
    ``y_test`` (other arrays are ignored), read with ``allow_pickle=False``, checked like
    :func:`load_user_data`'s (numbers, finite, one label per sample) and against the network that will
    read them: each sample of shape ``sample_shape`` (``(C, H, W)``; ``(N, H, W)`` is taken as one
    channel, NHWC is transposed), labels below ``num_classes``, at most ``max_samples``.  ``x`` is in
    the units the network's training data had before normalisation; ``normalization`` (per-channel
    means and standard deviations of its training split) is applied.  Refusals are
    :class:`KnobError` naming ``name``, the array and its shape."""
    import io
    import zipfile
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise KnobError(f"{name} is not a readable .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise KnobError(f"{name} holds one array, not a .npz archive of x_test and y_test")
    with archive:
        missing = [k for k in ("x_test", "y_test") if k not in archive.files]
        if missing:
            raise KnobError(f"{name} lacks {', '.join(missing)}: a test set holds x_test and y_test "
                            f"(it holds {', '.join(archive.files) or 'nothing'})")
        try:
            x, y = archive["x_test"], archive["y_test"]
        except ValueError:
            raise KnobError(f"{name}: x_test or y_test is an object array; arrays of numbers only (object arrays "
                            "would need unpickling, which is never done)") from None
    if not np.issubdtype(x.dtype, np.number):
        raise KnobError(f"{name}: x_test has dtype {x.dtype}: pixels and samples must be numbers")
    want = tuple(int(d) for d in sample_shape)
    if x.ndim == len(want) and want[0] == 1 and tuple(x.shape[1:]) == want[1:]:
        x = x[:, None]                                   # (N, H, W) of a one-channel network
    x = _layout("x_test", x)
    if tuple(x.shape[1:]) != want:
        raise KnobError(f"{name}: x_test has samples of shape {tuple(x.shape[1:])} (array {tuple(x.shape)}), but the "
                        f"network reads samples of shape {want}")
    if not 0 < len(x) <= max_samples:
        raise KnobError(f"{name}: x_test has {len(x)} samples: a test set here holds 1 to {max_samples}")
    bad = int((~np.isfinite(x)).sum())
    if bad:
        raise KnobError(f"{name}: x_test (shape {x.shape}) has {bad} NaN or infinite values: all must be finite")
    try:
        y = _labels("y_test", np.asarray(y), len(x), "x_test")
    except KnobError as exc:
        raise KnobError(f"{name}: {exc}") from None
    if y.max() >= num_classes:
        raise KnobError(f"{name}: y_test has label {int(y.max())} but the network has {num_classes} classes "
                        f"(labels 0..{num_classes - 1})")
    if normalization is not None:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean, std = (np.asarray(v, dtype=np.float32).reshape(shape) for v in normalization)
        x = (x - mean) / std
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y)
