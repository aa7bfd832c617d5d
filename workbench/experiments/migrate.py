"""Store migration: datasets written before the swept dims were named after their knob.

The robustness studies called their noise axis ``level`` (now ``sigma_c`` for multiplicative,
``sigma`` for additive noise, :func:`~.sharpness.noise_dim`) and the NAS datasets called the
entries of a state ``var`` (now :data:`~workbench.nas.space.STATE_DIM`).  Only names change, so a
migrated entry keeps its key (the spec and the code version are unchanged) and every value; it is
rewritten through :meth:`Store.save_dataset` (atomic write, new checksum) under the entry's lock.

Run ``python -m workbench.experiments.migrate [--cache-dir DIR]`` (default: ``data/store``).
"""

from __future__ import annotations

import argparse
import json

import xarray as xr

from ..keys import CODE_VERSION
from ..nas.space import STATE_ATTRS, STATE_DIM
from .store import SHIPPED_ROOT, Store, spec_key

__all__ = ["dim_renames", "migrate_dims"]


def dim_renames(ds: xr.Dataset) -> dict[str, str]:
    """The renames that bring ``ds`` to the knob-named dims (empty when it has them already)."""
    out = {}
    if "level" in ds.dims:      # a robustness study names its knob in attrs; the ρ study is multiplicative only
        out["level"] = str(ds.attrs.get("level_name", "sigma_c"))
    if "var" in ds.dims:
        out["var"] = STATE_DIM
    return out


def migrate_dims(store: Store) -> list[str]:
    """Rename the old dims of every current entry of ``store``'s writable root; returns the
    migrated ``kind/key`` names.  Entries of another code version or whose spec does not hash to
    their key are left alone (no current code reads them)."""
    done = []
    for e in store.entries():
        if e.shipped or not e.ok or e.path.suffix != ".nc":
            continue
        ds = store.load_dataset(e.kind, e.key)
        if ds is None or not dim_renames(ds) or ds.attrs.get("code_version") != CODE_VERSION:
            continue
        spec = json.loads(ds.attrs["spec_json"])
        if spec_key(e.kind, spec) != e.key:
            continue
        with store.lock(e.kind, e.key):
            ds = store.load_dataset(e.kind, e.key)
            renames = dim_renames(ds)
            if not renames:
                continue
            ds = ds.rename(renames)
            if STATE_DIM in ds.coords:
                ds[STATE_DIM].attrs = dict(STATE_ATTRS)
            store.save_dataset(e.kind, e.key, ds, spec)
        done.append(f"{e.kind}/{e.key}")
    return done


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m workbench.experiments.migrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", default=str(SHIPPED_ROOT), help="store to migrate in place (default: data/store)")
    root = ap.parse_args(argv).cache_dir
    for name in migrate_dims(Store(root, read_only=[])):
        print("migrated", name)


if __name__ == "__main__":
    main()
