"""The cell catalogue of a sweep: each experiment of a spec as independent store entries.

A :class:`Cell` is ``(function path, kwargs)`` that computes one store entry: a trained network
(:func:`~.core.train_model`), a Monte-Carlo point (:func:`~.core.evaluate`) or an assembled
experiment (:func:`~.sweep.run_experiment`).  :data:`CELLS` holds, per experiment kind, the
function listing its cells from the spec's parameters, validated and gridded by the same helpers
the experiment itself uses (e.g. :func:`~.sharpness.robustness_grid`); a cell's key is the key its
in-process run writes (:func:`~.core.evaluate_spec`, ``TrainConfig.to_dict``), so running every
cell and then the experiment only reads the cache.  Every experiment ends with the cell that
assembles it; a kind without an entry in :data:`CELLS` runs whole as that one cell.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from ..knobs import KnobError, check_choice
from ..training import TrainConfig
from .store import Store, spec_key


@dataclass(frozen=True)
class Cell:
    """One independent unit of a sweep: ``function(**kwargs, store=, device=, cancel=)`` computes
    the store entry ``kind/key.ext``.  ``depends``: ids of the cells whose entries it reads."""

    name: str
    function: str | Callable                # "package.module:function" (or a picklable callable)
    kwargs: dict[str, Any] = field(hash=False)
    kind: str
    key: str
    ext: str = "nc"
    depends: tuple[str, ...] = ()
    experiment: str = ""

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.key}"

    def present(self, store: Store) -> bool:
        """Whether the entry is already in ``store`` (a valid file; its checksum is verified)."""
        return store.find(self.kind, self.key, self.ext) is not None


# ------------------------------------------------------------------ the functions cells run
def train_cell(config: dict, *, store: Store, device: str = "auto", cancel=None) -> None:
    """Cell: train one network into the store (:func:`~.core.train_model`)."""
    from .core import train_model
    cfg = TrainConfig.from_dict(config)
    if store.find("weights", spec_key("weights", cfg.to_dict()), "pt") is None:
        train_model(cfg, store, device=device, cancel=cancel)


def evaluate_cell(config: dict, memory: dict, *, draws: int, seed: int, adabs: bool = False,
                  target_ci_width: float | None = None, store: Store, device: str = "auto", cancel=None) -> None:
    """Cell: one Monte-Carlo point into the store (:func:`~.core.evaluate`)."""
    from .core import evaluate
    evaluate(TrainConfig.from_dict(config), memory, draws=draws, seed=seed, adabs=adabs,
             target_ci_width=target_ci_width, store=store, device=device, cancel=cancel)


def experiment_cell(experiment: str, params: dict, *, store: Store, device: str = "auto", cancel=None) -> None:
    """Cell: assemble one experiment of a spec into the store (:func:`~.sweep.run_experiment`);
    its other cells are cache hits by then."""
    from .sweep import run_experiment
    run_experiment(experiment, params, store, device=device, cancel=cancel)


# ------------------------------------------------------------------ cells of the two entry kinds
def training(cfg: TrainConfig, label: str) -> Cell:
    """The cell that trains ``cfg`` (store entry ``weights``, keyed as :func:`~.core.train_model` keys it)."""
    spec = cfg.to_dict()
    return Cell(f"train {label}", f"{__name__}:train_cell", {"config": spec}, "weights", spec_key("weights", spec),
                "pt")


def evaluation(cfg: TrainConfig, memory: dict, label: str, *, draws: int, seed: int, adabs: bool = False,
               depends: Sequence[Cell] = ()) -> Cell:
    """The cell of one :func:`~.core.evaluate` point (its key from :func:`~.core.evaluate_spec`)."""
    from .core import evaluate_spec
    key = spec_key("evaluate", evaluate_spec(cfg, memory, draws=draws, seed=seed, adabs=adabs))
    return Cell(f"evaluate {label}", f"{__name__}:evaluate_cell",
                {"config": cfg.to_dict(), "memory": memory, "draws": draws, "seed": seed, "adabs": bool(adabs)},
                "evaluate", key, "nc", tuple(c.id for c in depends))


def bind(fn: Callable, params: dict) -> dict[str, Any]:
    """``params`` with ``fn``'s defaults filled in (an unknown parameter raises like the call would)."""
    try:
        bound = inspect.signature(fn).bind_partial(**params)
    except TypeError as exc:
        raise KnobError(f"{fn.__name__}: {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


# ------------------------------------------------------------------ each experiment's cells
def _robustness(methods, seeds, *, noise="multiplicative", levels=None, g_u=25.0, adabs=(False, True), draws=10,
                rho=None, base=None, train=None, **_ignored) -> list[Cell]:
    """The cells of :func:`~.sharpness.robustness_study`, on the grid it builds
    (:func:`~.sharpness.robustness_grid`)."""
    from .sharpness import BASE_PRESET, METHODS, method_config, robustness_grid
    methods, seeds, levels, adabs, mems = robustness_grid(methods, seeds, noise, levels, g_u, adabs, draws)
    base = base or BASE_PRESET
    out = []
    for m in methods:
        sam_rho = rho if "sam" in METHODS[m] else None
        for s in seeds:
            cfg = method_config(m, s, base=base, rho=sam_rho, **(train or {}))
            tag = f"{m} seed={s}" + (f" rho={rho}" if sam_rho is not None else "")
            t = training(cfg, tag)
            out.append(t)
            for ada in adabs:
                for v, mem in zip(levels, mems, strict=True):
                    out.append(evaluation(cfg, mem, f"{tag} {noise} {v:g}{' adabs' if ada else ''}", draws=draws,
                                          seed=0, adabs=ada, depends=[t]))
    return out


def _robustness_cells(noise: str | None = None):
    def cells(params: dict) -> list[Cell]:
        from .sharpness import robustness_study
        return _robustness(**bind(robustness_study, {**({"noise": noise} if noise else {}), **params}))
    return cells


def _per_network_cells(fn_name: str):
    """Chapter-5 studies computed per trained network (quantisation, OOD, PCM drift): the
    training cells; the per-network analysis runs in the experiment's own cell."""
    def cells(params: dict) -> list[Cell]:
        from . import sharpness
        kw = bind(getattr(sharpness, fn_name), params)
        methods, seeds = sharpness.network_grid(kw["methods"], kw["seeds"])
        return [training(sharpness.method_config(m, s, base=kw["base"], **(kw["train"] or {})), f"{m} seed={s}")
                for m in methods for s in seeds]
    return cells


def _sharpness_cells(params: dict) -> list[Cell]:
    """The robustness curves m-sharpness is correlated with, and the networks (as the ``sharpness``
    entry of :data:`~.sweep.EXPERIMENTS` computes them)."""
    from . import sharpness
    kw = dict(params)
    rob = sharpness.sharpness_robustness_args(kw)
    a = bind(sharpness.sharpness_study, kw)
    if rob:
        cells = _robustness(**rob)
    else:
        cells = _robustness(a["methods"], a["seeds"], levels=[0.0, a["high"]], adabs=[a["adabs"]], draws=10,
                            base=a["base"], train=a["train"])
    return cells + _per_network_cells("sharpness_study")(kw)


def _rho_cells(params: dict) -> list[Cell]:
    from . import sharpness
    a = bind(sharpness.rho_study, params)
    methods, rhos = sharpness.rho_grid(a["methods"], a["rhos"])
    return [c for m in methods for r in rhos[m]
            for c in _robustness([m], a["seeds"], levels=a["levels"], adabs=[a["adabs"]], draws=a["draws"], rho=r,
                                 base=a["base"], train=a["train"])]


def _uniform_ber_cells(params: dict) -> list[Cell]:
    """Fig 4.2 (as :data:`~.sweep.EXPERIMENTS` ``["uniform_ber"]`` calls it): a network per
    (p_t, seed), an evaluation per (network, p)."""
    from .sram import bc_config, sram_map, uniform_ber_grid
    p_train, p_test = uniform_ber_grid(params["p_train"], params["p_test"])
    out = []
    for pt in p_train:
        for seed in params["seeds"]:
            cfg = bc_config(pt, seed, **(params.get("train") or {}))
            t = training(cfg, f"bc p_train={pt:g} seed={seed}")
            out.append(t)
            out += [evaluation(cfg, sram_map(p), f"bc p_train={pt:g} seed={seed} p={p:g}", draws=params["draws"],
                               seed=seed, depends=[t]) for p in p_test]
    return out


def _bc_train_cells(params: dict) -> list[Cell]:
    """The BinaryConnect networks of the sensitivity and spectra experiments (their analyses run
    in the experiment's own cell)."""
    from .sram import bc_config, bc_networks
    return [training(bc_config(pt, seed, **(params.get("train") or {})), f"bc p_train={pt:g} seed={seed}")
            for pt, seed in bc_networks(params["p_train"], params["seeds"])]


#: experiment kind -> its cells (before the cell that assembles the experiment); kinds not listed
#: (energy_accuracy, nas, nas_select) run whole as one task
CELLS: dict[str, Callable[[dict], list[Cell]]] = {
    "robustness": _robustness_cells(),
    "robustness_additive": _robustness_cells("additive"),
    "rho": _rho_cells,
    "sharpness": _sharpness_cells,
    "quantization": _per_network_cells("quantization_study"),
    "ood": _per_network_cells("ood_study"),
    "pcm_drift": _per_network_cells("drift_study"),
    "uniform_ber": _uniform_ber_cells,
    "sensitivity": _bc_train_cells,
    "spectra": _bc_train_cells,
}


def experiment_cells(name: str, params: dict) -> list[Cell]:
    """The cells of one experiment of a spec, in dependency order, ending with the cell that
    assembles it (``sweep-<name>``; it depends on all the others)."""
    from .sweep import EXPERIMENTS
    check_choice("experiment", name, sorted(EXPERIMENTS))
    cells = [replace(c, experiment=name) for c in CELLS.get(name, lambda p: [])(params)]
    kind = f"sweep-{name}"
    final = Cell(f"assemble {name}", f"{__name__}:experiment_cell", {"experiment": name, "params": params}, kind,
                 spec_key(kind, params), "nc", tuple(dict.fromkeys(c.id for c in cells)), name)
    return cells + [final]


def spec_cells(spec: dict[str, Any], only: Sequence[str] | None = None) -> list[Cell]:
    """Every cell of a spec, each once (experiments share networks and points), in dependency order."""
    out: dict[str, Cell] = {}
    for name, params in spec["experiments"].items():
        if only and name not in only:
            continue
        for c in experiment_cells(name, params):
            out.setdefault(c.id, c)
    return list(out.values())


def missing_cells(cells: Sequence[Cell], store: Store) -> list[Cell]:
    """The cells to compute: those not in the store that a missing cell with no dependents (an
    experiment's assembly) needs — a cell that only serves a result already stored is not."""
    by_id = {c.id: c for c in cells}
    present: dict[str, bool] = {}

    def absent(cid: str) -> bool:              # each entry checked (its checksum read) once
        if cid not in present:
            present[cid] = by_id[cid].present(store)
        return not present[cid]

    used = {d for c in cells for d in c.depends}
    need: set[str] = set()
    stack = [c.id for c in cells if c.id not in used and absent(c.id)]
    while stack:
        cid = stack.pop()
        if cid in need:
            continue
        need.add(cid)
        stack += [d for d in by_id[cid].depends if d in by_id and absent(d)]
    return [c for c in cells if c.id in need]


__all__ = ["CELLS", "Cell", "bind", "evaluate_cell", "evaluation", "experiment_cell", "experiment_cells",
           "missing_cells", "spec_cells", "train_cell", "training"]
