"""The result store: one file per spec hash, atomic writes, checksums, locks.

* key = sha256 of the canonical JSON of ``{kind, spec, code_version}``; the spec is kept in
  the file (netCDF ``attrs`` / the torch payload), never encoded in the file name;
* writes go to a temporary file in the same directory, then ``os.replace`` (atomic), then a
  ``.sha256`` sidecar: a reader verifies it, so a truncated, half-written or corrupt file is
  detected, removed and recomputed;
* computing a missing key holds an exclusive ``flock`` on ``<key>.lock``: a second process
  asking for the same key waits, then reads the first one's result.

Location: ``Store(root)``, else ``$WORKBENCH_CACHE``, else the user cache directory.  Extra
read-only roots (the repository's ``data/store``, results shipped with the project) are
consulted first.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import dask.array  # noqa: F401  (see below)
import h5netcdf  # noqa: F401
import platformdirs
import torch
import xarray as xr

# xarray imports dask (dask.array, and through dask's scheduler lookup ``distributed``) on the
# first netCDF read or write.  On the worker threads of a served page, two sessions saving their
# first results at once raced in those imports and one failed with "module 'dask' has no attribute
# 'utils'"; importing them here, once, on the importing thread, leaves nothing to race.
with contextlib.suppress(ImportError):
    import dask.distributed  # noqa: F401

from ..keys import CODE_VERSION, canonical, spec_key

__all__ = ["CACHE_ENV", "CODE_VERSION", "SHIPPED_ROOT", "Entry", "Store", "canonical", "default_root", "spec_key"]

CACHE_ENV = "WORKBENCH_CACHE"
#: results shipped with the repository (regenerate with ``workbench precompute``)
SHIPPED_ROOT = Path(__file__).resolve().parents[2] / "data" / "store"


def default_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir("workbench")) / "store"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Entry:
    kind: str
    key: str
    path: Path
    ok: bool
    size: int
    shipped: bool


def _local_scheduler():
    """Serialise in this process even when a Dask client is the default scheduler: xarray would
    otherwise guard the in-memory netCDF write with a distributed lock it cannot name."""
    try:
        import dask
    except ImportError:
        return contextlib.nullcontext()
    return dask.config.set(scheduler="synchronous")


class Store:
    """Read/write cache of xarray Datasets (``.nc``) and torch weights (``.pt``)."""

    def __init__(self, root: str | os.PathLike | None = None, read_only: Iterable[str | os.PathLike] | None = None):
        self.root = Path(root) if root is not None else default_root()
        ro = [SHIPPED_ROOT] if read_only is None else [Path(p) for p in read_only]
        self.read_only = [p for p in ro if p.resolve() != self.root.resolve()]

    # ---------------------------------------------------------------- paths and integrity
    def path(self, kind: str, key: str, ext: str, root: Path | None = None) -> Path:
        return (root or self.root) / kind / f"{key}.{ext}"

    @staticmethod
    def _valid(path: Path) -> bool:
        side = path.with_name(path.name + ".sha256")
        try:
            return path.is_file() and side.is_file() and side.read_text().strip() == _sha256(path)
        except OSError:
            return False

    def find(self, kind: str, key: str, ext: str, repair: bool = False) -> Path | None:
        """The valid file of entry ``kind/key.ext`` (read-only roots first; its checksum verified),
        or None when no root holds it.  ``repair (only while holding the entry's :meth:`lock`)
        removes a corrupt or incomplete one from the writable root: without the lock it might be
        one another process is writing right now (data replaced, sidecar not yet written)."""
        for root in [*self.read_only, self.root]:
            p = self.path(kind, key, ext, root)
            if p.exists():
                if self._valid(p):
                    return p
                if repair and root == self.root:       # a corrupt or half-written entry: drop it, recompute
                    self._remove(p)
        return None

    @staticmethod
    def _remove(path: Path) -> None:
        for p in (path, path.with_name(path.name + ".sha256")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def _write_atomic(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)            # mkstemp makes 0600; a cache is readable like any file
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        side_fd, side_tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.sha.", suffix=".tmp")
        with os.fdopen(side_fd, "w") as f:
            f.write(hashlib.sha256(data).hexdigest())
        os.chmod(side_tmp, 0o644)
        os.replace(side_tmp, path.with_name(path.name + ".sha256"))

    @contextlib.contextmanager
    def lock(self, kind: str, key: str):
        p = self.path(kind, key, "lock")
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # ---------------------------------------------------------------- datasets
    def load_dataset(self, kind: str, key: str, repair: bool = False) -> xr.Dataset | None:
        p = self.find(kind, key, "nc", repair)
        if p is None:
            return None
        try:
            with xr.open_dataset(p, engine="h5netcdf") as ds:
                return ds.load()
        except Exception:  # unreadable despite its checksum (e.g. written by another version)
            if repair and p.parent.parent == self.root:
                self._remove(p)
            return None

    def save_dataset(self, kind: str, key: str, ds: xr.Dataset, spec: dict) -> Path:
        ds = ds.copy()
        ds.attrs["spec_json"] = canonical(spec)
        ds.attrs["kind"] = kind
        ds.attrs["code_version"] = CODE_VERSION
        ds.attrs = {k: (json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)
                    for k, v in ds.attrs.items()}
        with _local_scheduler():
            data = ds.to_netcdf(engine="h5netcdf")
        p = self.path(kind, key, "nc")
        self._write_atomic(p, bytes(data))
        return p

    def get_or_compute(self, kind: str, spec: dict, compute: Callable[[], xr.Dataset]) -> xr.Dataset:
        """The cached Dataset for ``spec``, computing (once, under a lock) when missing or corrupt."""
        key = spec_key(kind, spec)
        ds = self.load_dataset(kind, key)
        if ds is not None:
            ds.attrs["cache"] = "hit"
            ds.attrs["cache_key"] = key
            return ds
        with self.lock(kind, key):
            ds = self.load_dataset(kind, key, repair=True)   # another process may have finished meanwhile
            if ds is None:
                computed = compute()
                self.save_dataset(kind, key, computed, spec)
                ds = self.load_dataset(kind, key, repair=True)
                if ds is None:      # removed under our feet (``cache clear``): serve the computed one
                    ds = computed.copy()
                    ds.attrs.update(spec_json=canonical(spec), kind=kind, code_version=CODE_VERSION)
                ds.attrs["cache"] = "computed"
            else:
                ds.attrs["cache"] = "hit"
        ds.attrs["cache_key"] = key
        return ds

    # ---------------------------------------------------------------- weights
    def load_object(self, kind: str, key: str, repair: bool = False) -> dict | None:
        p = self.find(kind, key, "pt", repair)
        if p is None:
            return None
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception:
            if repair and p.parent.parent == self.root:
                self._remove(p)
            return None

    def save_object(self, kind: str, key: str, obj: dict, spec: dict) -> Path:
        buf = io.BytesIO()
        torch.save({**obj, "spec": spec, "code_version": CODE_VERSION}, buf)
        p = self.path(kind, key, "pt")
        self._write_atomic(p, buf.getvalue())
        return p

    # ---------------------------------------------------------------- management
    def entries(self) -> list[Entry]:
        out = []
        for root, shipped in [(self.root, False), *[(r, True) for r in self.read_only]]:
            if not root.exists():
                continue
            for p in sorted(root.glob("*/*")):
                if p.suffix in (".nc", ".pt"):
                    out.append(Entry(p.parent.name, p.stem, p, self._valid(p), p.stat().st_size, shipped))
        return out

    def verify(self, repair: bool = True) -> list[Entry]:
        """Check every entry's checksum; bad ones in the writable root are removed if ``repair``."""
        entries = self.entries()
        if repair:
            for e in entries:
                if not e.ok and not e.shipped:
                    with self.lock(e.kind, e.key):      # not one a writer is finishing right now
                        if not self._valid(e.path):
                            self._remove(e.path)
        return entries

    def clear(self) -> int:
        """Remove every entry of the writable root (only the store's own files: ``--cache-dir``
        may name a directory that holds other things)."""
        n = sum(1 for e in self.entries() if not e.shipped)
        if not self.root.exists():
            return n
        for d in self.root.iterdir():
            if not d.is_dir() or d.is_symlink():
                continue
            for f in d.iterdir():
                if f.is_file() and (f.suffix in (".nc", ".pt", ".sha256", ".lock") or f.name.endswith(".tmp")):
                    with contextlib.suppress(FileNotFoundError):
                        f.unlink()
            with contextlib.suppress(OSError):
                d.rmdir()                        # only when empty
        with contextlib.suppress(OSError):
            self.root.rmdir()
        return n
