"""Many processes on one result store at once: writers of shared and private keys, writers that
keep replacing the same entry, a reader and a ``verify(repair=True)`` sweeper all run together,
released at the same instant.  Nothing may be lost, computed twice, half-read or left corrupt.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np

from workbench.experiments import Store, spec_key

from helpers import release_together

ROOT = Path(__file__).resolve().parents[1]
WRITERS, SHARED, OWN, REWRITES = 6, 5, 6, 15

CHILD = textwrap.dedent("""
    import json, os, random, sys, time
    from pathlib import Path
    import numpy as np
    import torch
    import xarray as xr
    from workbench.experiments.store import Store, spec_key

    root, role, tag = sys.argv[1], sys.argv[2], sys.argv[3]
    work = Path(root).parent
    SHARED, OWN, REWRITES = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    store = Store(root, read_only=[])

    def seeded(seed):
        rng = np.random.default_rng(seed)
        return xr.Dataset({"x": ("i", rng.normal(size=4000), {"long_name": "x", "units": "1"})}, attrs={"seed": seed})

    (work / f"ready-{tag}").touch()
    deadline = time.time() + 120
    while not (work / "go").exists():
        if time.time() > deadline:
            sys.exit("no go signal")
        time.sleep(0.002)
    out = {"tag": tag, "pid": os.getpid(), "problems": [], "reads": 0}

    if role == "writer":
        own = [("own", j) for j in range(OWN)]
        random.Random(tag).shuffle(own)
        order = [("shared", j) for j in range(SHARED)] + own      # all writers race for each shared key
        for what, j in order:
            spec = {"j": j} if what == "shared" else {"tag": tag, "j": j}
            seed = 1000 + j if what == "shared" else 10_000 + 100 * int(tag[1:]) + j

            def compute(what=what, j=j, seed=seed):
                with open(work / "computed.log", "a") as f:      # O_APPEND: one line per compute
                    f.write(f"{what} {j} {tag}\\n" if what == "shared" else f"own {tag}-{j} {tag}\\n")
                time.sleep(0.2 if what == "shared" else 0.02)
                return seeded(seed)
            ds = store.get_or_compute(what, spec, compute)
            if not np.array_equal(ds.x.values, seeded(seed).x.values):
                out["problems"].append(f"{what} {spec}: wrong values")
            w = {"w": torch.full((64, 64), float(j)), "tag": tag}
            store.save_object("weights", spec_key("weights", {"tag": tag, "j": j}), w, {"tag": tag, "j": j})
    elif role == "rewriter":            # replace one entry over and over with the same content
        for _ in range(REWRITES):
            store.save_dataset("same", spec_key("same", {"k": 0}), seeded(7), {"k": 0})
    elif role == "reader":              # every read is either absent or complete and correct
        key = spec_key("same", {"k": 0})
        expect = seeded(7).x.values
        end = time.time() + 3.0
        while time.time() < end:
            ds = store.load_dataset("same", key)
            if ds is not None:
                out["reads"] += 1
                if not np.array_equal(ds.x.values, expect):
                    out["problems"].append("read a wrong 'same' entry")
            for j in range(SHARED):
                ds = store.load_dataset("shared", spec_key("shared", {"j": j}))
                if ds is not None:
                    out["reads"] += 1
                    if int(ds.attrs["seed"]) != 1000 + j:
                        out["problems"].append(f"read a wrong shared {j}")
    elif role == "verifier":            # repair must never remove an entry a writer is finishing
        end = time.time() + 3.0
        while time.time() < end:
            bad = [e for e in store.verify(repair=True) if not e.ok]
            out["reads"] += 1
            out.setdefault("bad_seen", 0)
            out["bad_seen"] += len(bad)
    print(json.dumps(out))
""")


def _tmp_files(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_many_processes_share_one_store_without_loss(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    root = tmp_path / "store"
    roles = [("writer", f"w{i}") for i in range(WRITERS)] + [("rewriter", "r0"), ("rewriter", "r1"),
                                                              ("reader", "q0"), ("verifier", "v0")]
    env = {**os.environ, "WORKBENCH_CACHE": str(tmp_path / "env-cache"), "OMP_NUM_THREADS": "1"}
    runs = release_together([[sys.executable, str(script), str(root), role, tag, str(SHARED), str(OWN), str(REWRITES)]
                             for role, tag in roles], tmp_path, [tag for _, tag in roles], env)
    for (role, tag), (rc, _, err) in zip(roles, runs):
        assert rc == 0, f"{role} {tag}: {err[-3000:]}"
    outs = [(out, err) for _, out, err in runs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    problems = [pr for r in results for pr in r["problems"]]
    assert not problems, problems
    assert any(r["reads"] > 0 for r in results if r["tag"] == "q0"), "the reader never saw an entry"

    # every shared entry computed exactly once, every private one once by its own writer
    lines = (tmp_path / "computed.log").read_text().splitlines()
    counts = collections.Counter(" ".join(line.split()[:2]) for line in lines)
    assert {k: v for k, v in counts.items() if v != 1} == {}, "some entries were computed more than once"
    assert sum(k.startswith("shared") for k in counts) == SHARED
    assert sum(k.startswith("own") for k in counts) == WRITERS * OWN

    # nothing lost, nothing corrupt, nothing half-written left behind
    store = Store(root, read_only=[])
    entries = store.verify(repair=False)
    assert all(e.ok for e in entries), [e.path.name for e in entries if not e.ok]
    by_kind = collections.Counter(e.kind for e in entries)
    assert by_kind == {"shared": SHARED, "own": WRITERS * OWN, "weights": WRITERS * OWN, "same": 1}
    assert _tmp_files(root) == []
    for i in range(WRITERS):
        for j in range(OWN):
            w = store.load_object("weights", spec_key("weights", {"tag": f"w{i}", "j": j}))
            assert w is not None and w["tag"] == f"w{i}" and float(w["w"][0, 0]) == j
    for j in range(SHARED):
        ds = store.load_dataset("shared", spec_key("shared", {"j": j}))
        rng = np.random.default_rng(1000 + j)
        assert np.array_equal(ds.x.values, rng.normal(size=4000))
