"""Files uploaded to the playground: a test set (.npz) and a state dict (.pt) for the chosen
network, checked like the CLI's, kept in the session (the store is not touched), and a bad one
refused with a message naming what is wrong while everything stays as it was."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch

from workbench.datasets import as_tensors, load_dataset
from workbench.experiments import Store
from workbench.experiments.core import train_model
from workbench.ui.explorer import NoiseExplorer, playground_config

from helpers import assert_no_console_errors, wait_until, watch_console


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def digits_test(n=120):
    """The digits test split in its raw units (pixel intensities ÷ 16), as a teacher would save it."""
    d = load_dataset("digits")
    x, y = as_tensors(d.test)
    (mean,), (std,) = d.normalization
    return (x[:n, 0].numpy() * std + mean), y[:n].numpy()


@pytest.fixture
def explorer(tmp_path):
    return NoiseExplorer(store=Store(tmp_path / "store"), autorun=False, technology="memristor", draws=4)


def files_in(store_root):
    if not store_root.exists():
        return []
    return sorted(p.relative_to(store_root) for p in store_root.rglob("*") if p.is_file())


def test_an_uploaded_test_set_is_read_back_normalised_and_evaluated_in_the_session(explorer, tmp_path):
    x, y = digits_test()
    assert explorer.upload_test_set("mine.npz", npz_bytes(x_test=x, y_test=y)), explorer.upload_error
    xt, yt = explorer._uploaded_test
    d = load_dataset("digits")
    torch.testing.assert_close(xt, as_tensors(d.test)[0][:120], atol=1e-5, rtol=0)   # the network's own inputs
    assert explorer.uploads == {"test": "your test set (mine.npz, 120 samples)"}
    train_model(playground_config("memristor"), explorer.store)                      # the page's clean network
    before = files_in(tmp_path / "store")
    ds = explorer._session_evaluator()(explorer.train_config(), explorer.memory(), draws=4, seed=0)
    assert ds.sizes["draw"] == 4 and 0.5 < ds.attrs["accuracy_mean"] <= 1.0 and ds.attrs["cache"] == "session"
    assert files_in(tmp_path / "store") == before                                   # nothing stored


@pytest.mark.parametrize("arrays, words", [
    (lambda x, y: {"x_test": np.array([object()] * 3), "y_test": np.arange(3)}, "object array"),
    (lambda x, y: {"x_test": x, "y_test": y[:-1]}, "y_test has 119 labels but x_test has 120 samples"),
    (lambda x, y: {"x_test": x, "y_test": y + 10}, "y_test has label 19 but the network has 10 classes"),
    (lambda x, y: {"x_test": np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), "y_test": y},
     "has 1 NaN or infinite values"),
    (lambda x, y: {"x_test": x[:, :4, :4], "y_test": y}, "but the network reads samples of shape (1, 8, 8)"),
    (lambda x, y: {"x_train": x}, "lacks x_test, y_test"),
])
def test_a_bad_test_set_is_refused_by_name_and_changes_nothing(explorer, arrays, words):
    x, y = digits_test()
    assert explorer.upload_test_set("good.npz", npz_bytes(x_test=x, y_test=y))
    kept = explorer._uploaded_test
    assert not explorer.upload_test_set("bad.npz", npz_bytes(**arrays(x, y)))
    assert words in explorer.upload_error and "bad.npz" in explorer.upload_error
    assert explorer._uploaded_test is kept and "good.npz" in explorer.uploads["test"]
    assert not explorer.upload_test_set("notes.txt", b"hello") and "expected a .npz file" in explorer.upload_error
    assert not explorer.upload_test_set("big.npz", b"0" * (NoiseExplorer.MAX_UPLOAD_BYTES + 1))
    assert "at most 10 MiB" in explorer.upload_error


def test_uploaded_weights_load_strictly_and_a_pickle_payload_is_never_run(explorer, tmp_path, capsys):
    net = train_model(playground_config("memristor", epochs=2), explorer.store).model
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    assert explorer.upload_weights("mine.pt", buf.getvalue()), explorer.upload_error
    assert "with your weights (mine.pt)" in explorer.uploads["weights"]
    ds = explorer._session_evaluator()(explorer.train_config(), explorer.memory(), draws=4, seed=0)
    assert ds.attrs["clean_accuracy"] == pytest.approx(train_model(playground_config("memristor", epochs=2),
                                                                   explorer.store).test_accuracy)

    wrong = io.BytesIO()
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    assert not explorer.upload_weights("wrong.pt", wrong.getvalue())
    assert "does not fit the model: missing keys" in explorer.upload_error and "/tmp" not in explorer.upload_error

    class Payload:
        def __reduce__(self):
            return (print, ("PAYLOAD RAN",))
    evil = io.BytesIO()
    torch.save({"x": Payload()}, evil)
    assert not explorer.upload_weights("evil.pt", evil.getvalue())
    assert "not a plain state dict" in explorer.upload_error
    assert "PAYLOAD RAN" not in capsys.readouterr().out
    assert "mine.pt" in explorer.uploads["weights"]                        # the good upload stays in use
    explorer.param.trigger("forget_uploads")
    assert explorer.uploads == {} and explorer._uploaded_state is None


@pytest.mark.browser
def test_the_page_takes_a_test_set_and_refuses_a_bad_one(served_app, page, tmp_path):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=playground&technology=memristor&draws=4")
    status = page.locator(".playground-status p")
    done = re.compile(r"Monte-Carlo draws · (read from the results store|just computed)")
    wait_until(lambda: done.search(" ".join(status.all_inner_texts())), 180, message="the first evaluation")
    x, y = digits_test(60)
    good, bad = tmp_path / "mine.npz", tmp_path / "bad.npz"
    good.write_bytes(npz_bytes(x_test=x, y_test=y))
    bad.write_bytes(npz_bytes(x_test=x, y_test=y + 10))
    page.locator(".upload-test input[type=file]").set_input_files(str(good))
    wait_until(lambda: re.search(r"your test set \(mine.npz, 60 samples\) · 4 Monte-Carlo draws · just computed",
                                 " ".join(status.all_inner_texts())), 180, message="the evaluation on the upload")
    page.locator(".upload-test input[type=file]").set_input_files(str(bad))
    wait_until(lambda: page.get_by_text(re.compile(r"File not used: the uploaded file bad.npz: y_test has label 19 "
                                                   r"but the network has 10 classes")).count() > 0, 60,
               message="the refusal naming the file and the labels")
    assert "mine.npz" in " ".join(status.all_inner_texts())                 # the good upload is still in use
    assert_no_console_errors(console)
