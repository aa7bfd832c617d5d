"""Your own data: .npz archives, image folders and factories become the same DataBundle, checked
before any training, normalised with their training split; bad files are refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.datasets import as_tensors, load_dataset
from workbench.knobs import KnobError
from workbench.userdata import data_digest, load_user_data, user_data_kind


@pytest.fixture
def digits_npz(tmp_path):
    d = load_dataset("digits")
    (x_tr, y_tr), (x_te, y_te) = as_tensors(d.train), as_tensors(d.test)
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=x_tr.numpy(), y_train=y_tr.numpy(), x_test=x_te.numpy(), y_test=y_te.numpy())
    return path, (x_tr, y_tr, x_te, y_te)


def test_an_npz_of_the_digits_loads_as_the_digits(digits_npz):
    path, (x_tr, y_tr, x_te, y_te) = digits_npz
    data = load_user_data(str(path))
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 1, 8)
    xu, yu = as_tensors(data.train)
    assert torch.equal(yu, y_tr) and xu.shape == x_tr.shape
    # normalised with the training split's own statistics (the digits already were: mean 0, std 1)
    assert abs(float(xu.mean())) < 1e-5 and abs(float(xu.std()) - 1) < 1e-3
    (mean,), (std,) = data.normalization
    torch.testing.assert_close(xu, (x_tr - mean) / std)
    assert user_data_kind(str(path)) == "npz" and len(data_digest(str(path))) == 64


def test_nhwc_images_and_one_dimensional_signals(tmp_path):
    rng = np.random.default_rng(0)
    nhwc = tmp_path / "rgb.npz"
    np.savez(nhwc, x_train=rng.random((20, 6, 6, 3)), y_train=np.arange(20) % 3, x_test=rng.random((6, 6, 6, 3)),
             y_test=np.arange(6) % 3)
    data = load_user_data(str(nhwc))
    assert (data.in_channels, data.image_size, data.num_classes) == (3, 6, 3)
    assert as_tensors(data.train)[0].shape == (20, 3, 6, 6)
    sig = tmp_path / "signals.npz"
    np.savez(sig, x_train=rng.normal(size=(30, 2, 50)), y_train=np.arange(30) % 2, x_test=rng.normal(size=(8, 2, 50)),
             y_test=np.arange(8) % 2)
    data = load_user_data(str(sig))
    assert (data.in_channels, data.image_size) == (2, 50) and as_tensors(data.test)[0].shape == (8, 2, 50)


def arrays(**override):
    rng = np.random.default_rng(1)
    a = dict(x_train=rng.random((10, 1, 4, 4)), y_train=np.arange(10) % 2, x_test=rng.random((4, 1, 4, 4)),
             y_test=np.arange(4) % 2)
    a.update(override)
    return a


@pytest.mark.parametrize("override, words", [
    (dict(x_train=np.array([object(), object()], dtype=object)), "x_train is an object array"),
    (dict(y_train=np.arange(9) % 2), "y_train has 9 labels but x_train has 10 samples"),
    (dict(y_test=np.array([0, 1, 2, 1])), "y_test has label 2 but y_train's labels are 0..1"),
    (dict(x_test=np.full((4, 1, 4, 4), np.nan)), "x_test (shape (4, 1, 4, 4)) has 64 NaN or infinite values"),
    (dict(x_test=np.zeros((4, 1, 5, 5))), "x_train samples are (1, 4, 4) but x_test samples are (1, 5, 5)"),
    (dict(y_train=np.arange(10) % 2 - 1), "y_train has a negative label"),
    (dict(y_train=np.linspace(0, 1, 10)), "non-integer values"),
])
def test_bad_npz_files_are_refused_naming_what_is_wrong(tmp_path, override, words):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays(**override))
    with pytest.raises(KnobError) as err:
        load_user_data(str(path))
    assert words in str(err.value)


def test_an_npz_missing_an_array_or_not_an_npz(tmp_path):
    path = tmp_path / "half.npz"
    a = arrays()
    a.pop("y_test")
    np.savez(path, **a)
    with pytest.raises(KnobError, match="lacks y_test"):
        load_user_data(str(path))
    (tmp_path / "fake.npz").write_bytes(b"not a zip at all")
    with pytest.raises(KnobError, match="not a readable .npz archive"):
        load_user_data(str(tmp_path / "fake.npz"))


def write_pngs(root, classes=("circle", "square"), n=6, size=8, seed=0):
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            img = (rng.random((size, size)) * 60 + 150 * k).astype(np.uint8)
            Image.fromarray(img, mode="L").save(root / name / f"{i}.png")


def test_a_folder_of_class_folders_is_split_stratified_and_seeded(tmp_path):
    write_pngs(tmp_path / "imgs")
    a = load_user_data(str(tmp_path / "imgs"), seed=3, test_fraction=0.5)
    b = load_user_data(str(tmp_path / "imgs"), seed=3, test_fraction=0.5)
    assert (a.num_classes, a.in_channels, a.image_size) == (2, 1, 8)
    ya = as_tensors(a.test)[1]
    assert torch.equal(ya, as_tensors(b.test)[1]) and sorted(ya.tolist()) == [0, 0, 0, 1, 1, 1]
    write_pngs(tmp_path / "split" / "train")
    write_pngs(tmp_path / "split" / "test", n=2, seed=1)
    c = load_user_data(str(tmp_path / "split"))
    assert len(c.train) == 12 and len(c.test) == 4
    Image.fromarray(np.zeros((9, 9), np.uint8), mode="L").save(tmp_path / "imgs" / "square" / "odd.png")
    with pytest.raises(KnobError, match="every image must have the same size"):
        load_user_data(str(tmp_path / "imgs"))


def test_a_spec_that_is_nothing_known_is_refused(tmp_path):
    with pytest.raises(KnobError, match="neither a .npz file"):
        load_user_data(str(tmp_path / "nothing.txt"))
    with pytest.raises(KnobError, match="cannot import"):
        load_user_data("no_such_module_here:factory")
