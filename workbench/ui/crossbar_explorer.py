"""State of the "Crossbar power & search" page (thesis ch. 6); no Panel here.

The page opens on the results of ``specs/crossbar_digits.json`` (shipped in ``data/store``): the
trained supernet, the NAS fronts of M1/M2/M3 and the n_a/n_p selection.  The user picks a subnet
(depth, width, expand ratio per stage) and one ``g_u`` per layer and sees its Monte-Carlo power and
accuracy; clicking a Pareto point shows that network and exports it as a standalone network (a .zip
of ``workbench nas --export``'s files); a search on the shipped estimator streams its front
generation by generation.  The Pareto fronts are shown on two axes chosen among the quantities the
study holds (accuracy, crossbar power, and for an accelerator study with a hardware profile energy
in J and latency in s), with the hypervolume of each strategy's front on that pair.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import param

from ..experiments import Store
from ..experiments.crossbar import (
    DIGITS_SIGMA,
    FRONT_AXES,
    evaluate_state,
    front_axes,
    load_supernet,
    pair_hypervolumes,
    search_setup,
    state_details,
    study_adc_choices,
    study_profile,
    supernet_config,
)
from ..experiments.estimate import estimate_state
from ..experiments.sweep import CROSSBAR_SPEC, load_spec, run_experiment
from ..knobs import KnobError, check_choice, out_of_range, range_text, range_words
from ..nas.supernet import Arch, Supernet
from .base import BackgroundState, result_param

REGENERATE = "workbench sweep specs/crossbar_digits.json --cache-dir data/store"


class CrossbarExplorer(BackgroundState):
    """Knobs and results of the ch. 6 page."""

    job_kinds = ("supernet", "nas", "nas_select", "analytic", "eval", "details", "search", "export")
    wait_rounds = 2            # the supernet's arrival starts the first evaluation
    cancel_kind = "search"

    depth = param.List(default=[3, 3, 3], item_type=int, doc="blocks per stage D")
    width = param.List(default=[1.0, 1.0, 1.0, 1.0], item_type=float, doc="width multiplier of the stem and each stage")
    expand = param.List(default=[1.0, 1.0, 1.0], item_type=float, doc="expand ratio of every block of each stage")
    g_u = param.Dict(default={}, doc="g_u / g_u^d per layer of the current subnet, in [0.5, 1.5] (eq 6.2)")
    sigma = param.Number(DIGITS_SIGMA, bounds=(0.0, 1.0), doc="additive conductance noise ε^v (µS)")
    draws = param.Integer(10, bounds=(2, 200), doc="Monte-Carlo draws of the current subnet")
    strategy = param.Selector(default="M2", objects=["M1", "M2", "M3"], doc="strategy of a search run from the page")
    pop_size = param.Integer(64, bounds=(4, 4096), doc="NSGA-II population of a page search")
    n_gen = param.Integer(40, bounds=(1, 2000), doc="NSGA-II generations of a page search")
    selected = param.Tuple(default=None, allow_None=True, length=2, doc="(strategy, point) clicked on the fronts")
    front_x = param.Selector(default="power", objects=list(FRONT_AXES),
                             doc="quantity on the x axis of the Pareto fronts (one the study holds)")
    front_y = param.Selector(default="accuracy", objects=list(FRONT_AXES),
                             doc="quantity on the y axis of the Pareto fronts (one the study holds)")
    #: a setting of a link refused only once the results it names had loaded (shown on the page)
    late_refusal = param.String("", precedence=-1)
    #: the search's own status line (the page's ``status`` follows the subnet's evaluations)
    search_status = param.String("", precedence=-1)
    #: the export's status line and the .zip it wrote (None until an export of the shown point is done)
    export_status = param.String("", precedence=-1)
    export_zip = param.String(None, allow_None=True, precedence=-1)

    search = param.Event(doc="run NSGA-II on the shipped estimator")
    cancel = param.Event(doc="cancel the running search")

    current = result_param()
    #: the instant readout shown while Monte Carlo refines: :func:`estimate_state` (first order in the noise)
    analytic = result_param()
    nas = result_param()
    selection = result_param()
    details = result_param()
    live = param.Dict(default=None, allow_None=True, precedence=-1, doc="front of the running search")

    def __init__(self, store: Store | None = None, spec_path=CROSSBAR_SPEC, device: str = "auto", autorun: bool = True,
                 **params):
        super().__init__(**params)
        self.store = store or Store()
        self.device = device
        self.spec = load_spec(spec_path)
        self.nas_params = self.spec["experiments"]["nas"]
        self.supernet_spec = self.nas_params.get("supernet")
        self.sigma = float((self.nas_params.get("nas") or {}).get("sigma", DIGITS_SIGMA))
        self.net = None
        self.space = None
        #: the supernet's layout (layers, depth/width/expand choices) from its configuration alone,
        #: known before the trained weights load: a link's subnet and g_u list are checked against it
        self.layout = Supernet(supernet_config(self.supernet_spec)).space
        self._reset_g_u()
        if autorun:
            self.load()

    # ------------------------------------------------------------------ spec results
    def load(self) -> None:
        """Load (or compute) the supernet, the NAS study and the n_a/n_p selection, then the current subnet."""
        def job(cancel):
            return load_supernet(self.supernet_spec, self.store, device=self.device, cancel=cancel)

        def ready(sn):
            self.net, self.space = sn.supernet, sn.supernet.space
            self.dispatch(self._loaded)

        self.launch("supernet", job, on_done=ready)
        for name, target in (("nas", "nas"), ("nas_select", "selection")):
            if name not in self.spec["experiments"]:
                continue
            params = self.spec["experiments"][name]

            def run(cancel, name=name, params=params):
                return run_experiment(name, params, self.store, device=self.device, cancel=cancel)

            self.launch(name, run, into=target)

    def _loaded(self) -> None:
        """The supernet arrived: evaluate the subnet the page (or a link) set meanwhile."""
        keep = {n: float(self.g_u.get(n, 1.0)) for n in self.present_layers()}
        if keep != self.g_u:
            self.g_u = keep          # evaluates
        else:
            self._evaluate()

    # ------------------------------------------------------------------ the current subnet
    def arch(self) -> Arch:
        S = len(self.depth)
        return Arch(tuple(int(d) for d in self.depth), tuple(float(w) for w in self.width),
                    tuple(tuple([float(self.expand[s])] * self.layout.max_depth) for s in range(S)))

    def present_layers(self, depth=None) -> list[str]:
        """The crossbar layers of the subnet of ``depth`` (default: the current one), in state order."""
        sp = self.layout
        m = sp.mask(np.asarray(self.depth if depth is None else depth))
        return [n for n, keep in zip(sp.layer_names(), m) if keep]

    def state(self) -> np.ndarray:
        names = self.layout.layer_names()
        g = [self.g_u.get(n, 1.0) for n in names]
        return self.layout.encode(self.arch(), g)

    def _reset_g_u(self) -> None:
        keep = {n: float(self.g_u.get(n, 1.0)) for n in self.present_layers()}
        if keep != self.g_u:
            self.g_u = keep          # triggers the evaluation

    def check_arch(self, name: str, values) -> list:
        """``values`` for ``depth``/``width``/``expand`` if the supernet allows them (KnobError names
        what it allows)."""
        sp = self.layout
        n, choices, kind = {"depth": (sp.n_stages, sp.depth_choices, "blocks per stage"),
                            "width": (sp.n_stages + 1, sp.width_choices, "width multipliers (stem, then each stage)"),
                            "expand": (sp.n_stages, sp.expand_choices, "expand ratios, one per stage")}[name]
        vals = list(values)
        if len(vals) != n:
            raise KnobError(f"{name} takes {n} {kind}, got {len(vals)}")
        bad = [v for v in vals if not any(abs(float(v) - c) < 1e-9 for c in choices)]
        if bad:
            raise KnobError(f"{name}: each of the {kind} must be one of {', '.join(f'{c:g}' for c in choices)}")
        return [int(v) for v in vals] if name == "depth" else [float(v) for v in vals]

    def set_g_u_list(self, values) -> None:
        """The g_u / g_u^d of every layer of the current subnet, in layer order (eq 6.2: each in
        [0.5, 1.5]); a list of the wrong length or with a value out of range changes nothing."""
        layers = self.present_layers()
        vals = [float(v) for v in values]
        if len(vals) != len(layers):
            raise KnobError(f"g_u takes one value per crossbar layer of this subnet ({len(layers)} layers), "
                            f"got {len(vals)}")
        lo, hi = self.layout.gu_low, self.layout.gu_high
        bad = [f"{v:g}" for v in vals if not (lo <= v <= hi) or not np.isfinite(v)]
        if bad:
            raise KnobError(f"g_u / g_u^d must be {range_words(lo, hi)} for every layer (eq 6.2); got {', '.join(bad)}")
        self.g_u = dict(zip(layers, vals))

    def set_point(self, strategy: str, point: int) -> None:
        """Select a point of the fronts; once the fronts are loaded, only a re-simulated point."""
        if self.nas is not None:
            strategies = [str(s) for s in self.nas.strategy.values]
            check_choice("strategy", strategy, strategies)
            ok = np.isfinite(self.nas.power.sel(strategy=strategy).values)
            if not (0 <= point < len(ok) and ok[point]):
                raise KnobError(f"{strategy} has re-simulated points "
                                f"{', '.join(str(i) for i in np.flatnonzero(ok))}")
        self.selected = (strategy, int(point))

    def shown_point(self) -> tuple[str, int] | None:
        """The selected point if the loaded fronts have it (a link's point is checked only once they load)."""
        if self.selected is None or self.nas is None:
            return None
        strategy, point = self.selected
        if strategy not in [str(s) for s in self.nas.strategy.values] or not 0 <= point < self.nas.sizes["point"]:
            return None
        return self.selected

    @param.depends("nas", watch=True)
    def _nas_arrived(self) -> None:
        """A point chosen (by a link) before the fronts loaded is checked and shown now."""
        if self.selected is None or self.nas is None:
            return
        try:
            self.set_point(*self.selected)
        except KnobError as exc:
            self.selected = None
            self.late_refusal = f"`point` was not used: {exc}"
            return
        self._details()

    def set_g_u(self, layer: str, value: float) -> None:
        """One layer's g_u as a multiple of its g_u^d (eq 6.2: in [0.5, 1.5])."""
        if layer not in self.present_layers():
            raise KnobError(f"layer={layer!r} is not in the current subnet; layers: {self.present_layers()}")
        v, lo, hi = float(value), self.layout.gu_low, self.layout.gu_high
        if not (lo <= v <= hi) or not np.isfinite(v):
            raise out_of_range(f"g_u of {layer}", value, f"in {range_text(lo, hi)}", "as a multiple of g_u^d, eq 6.2")
        self.g_u = {**self.g_u, layer: v}

    @param.depends("depth", "width", "expand", watch=True)
    def _arch_changed(self) -> None:
        for name in ("depth", "width", "expand"):
            try:
                self.check_arch(name, getattr(self, name))
            except KnobError as exc:
                self.error = f"{exc}"
                return
        self._reset_g_u()

    @param.depends("g_u", "sigma", "draws", watch=True)
    def _evaluate(self) -> None:
        if self.net is None or not self.g_u:
            return
        state, net = self.state(), self.net

        def analytic(cancel):
            return estimate_state(net, state, sigma=self.sigma)
        # queued first at the same priority, so it starts before (and ends long before) Monte Carlo
        self.launch("analytic", analytic, into="analytic", priority=0, analytic=None)

        def job(cancel):
            return evaluate_state(net, state, sigma=self.sigma, draws=self.draws, cancel=cancel)

        def done(ds):
            return dict(current=ds, status=f"{self.describe()}: power {float(ds.power[0]):,.0f} (arbitrary units), "
                                           f"accuracy {float(ds.accuracy.mean()):.3f} ± {float(ds.accuracy.std()):.3f}")

        self.launch("eval", job, label=f"evaluating {self.describe()}…", on_done=done, priority=0)

    def describe(self) -> str:
        return f"D = {list(self.depth)}, width = {list(self.width)}, expand = {list(self.expand)}"

    # ------------------------------------------------------------------ Pareto axes
    def front_axes(self) -> list[str]:
        """The quantities the loaded study holds (power and accuracy until it loads)."""
        return ["accuracy", "power"] if self.nas is None else front_axes(self.nas)

    def set_front_axis(self, which: str, name: str) -> None:
        """Put the study quantity ``name`` on the ``which`` (``"x"`` or ``"y"``) axis; the other axis
        takes the previous quantity if it showed ``name`` (the two always differ)."""
        check_choice("axis", which, ["x", "y"])
        check_choice(f"{which} axis", name, self.front_axes())
        mine, other = (("front_x", "front_y") if which == "x" else ("front_y", "front_x"))
        if getattr(self, other) == name:
            self.param.update(**{other: getattr(self, mine), mine: name})
        else:
            setattr(self, mine, name)

    @param.depends("front_x", "front_y", watch=True, on_init=False)
    def _axes_differ(self) -> None:
        """Both axes on one quantity (set one at a time): the other takes the default pair's partner."""
        if self.front_x == self.front_y:
            self.front_y = "accuracy" if self.front_x != "accuracy" else "power"

    def shown_axes(self) -> tuple[str, str]:
        """``(x, y)`` of the fronts: the chosen pair when the study holds both, else power–accuracy."""
        axes = self.front_axes()
        if self.front_x in axes and self.front_y in axes and self.front_x != self.front_y:
            return self.front_x, self.front_y
        return "power", "accuracy"

    def hypervolumes(self) -> dict[str, float]:
        """Hypervolume of each strategy's re-simulated front on the shown pair (one scale per cost)."""
        return {} if self.nas is None else pair_hypervolumes(self.nas, *self.shown_axes())

    # ------------------------------------------------------------------ Pareto points
    def point_state(self, strategy: str, point: int) -> np.ndarray:
        return self.nas.state_vector.sel(strategy=strategy).isel(point=point).values

    def pick(self, x: float, y: float) -> None:
        """Select the re-simulated point nearest to a click at ``(x, y)`` on the shown axes (power and
        accuracy by default; in the quantities' own units, J and s) by relative distance on both."""
        ds = self.nas
        if ds is None or x is None or y is None:
            return
        xa, ya = self.shown_axes()
        p, a = ds[xa].values, ds[ya].values
        ok = np.isfinite(p) & np.isfinite(a)
        span_p = np.nanmax(p) - np.nanmin(p) or 1.0
        span_a = np.nanmax(a) - np.nanmin(a) or 1.0
        d = np.where(ok, ((p - x) / span_p) ** 2 + ((a - y) / span_a) ** 2, np.inf)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        self.selected = (str(ds.strategy.values[i]), int(j))

    @param.depends("selected", watch=True)
    def _details(self) -> None:
        if self.selected is None or self.nas is None:
            return
        strategy, point = self.selected
        state = self.point_state(strategy, point)
        self.details = None

        adc, profile = study_adc_choices(self.nas), study_profile(self.nas)

        def job(cancel):
            return state_details(state, self.supernet_spec, self.store, sigma=self.sigma, draws=10, device=self.device,
                                 cancel=cancel, adc_choices=adc, profile=profile)

        self.launch("details", job, into="details")

    @param.depends("selected", watch=True)
    def _forget_export(self) -> None:
        """The download offered belongs to the point shown: another point clears it."""
        self.param.update(export_zip=None, export_status="")

    def export_point(self) -> bool:
        """Export the selected point as a standalone network in the background
        (:func:`workbench.nas.export.export_subnet`, as ``workbench nas --export``), zipped for
        download into ``export_zip``.  False when nothing is selected or the results are not loaded."""
        from ..nas.export import export_subnet
        if self.shown_point() is None or self.net is None:
            self.export_status = "click a point of the fronts first (and wait for the supernet to load)"
            return False
        strategy, point = self.selected
        net, nas = self.net, self.nas
        command = f"workbench nas --export DIR --strategy {strategy} --point {point}"

        def job(cancel):
            # one folder per export, removed with the previous one: a session keeps one .zip at a time
            root = Path(tempfile.mkdtemp(prefix="workbench-export-"))
            name = f"crossbar-{strategy}-point{point}"
            meta = export_subnet(root / name, net, nas, strategy=strategy, point=point, cancel=cancel,
                                 provenance={"command": command, "page": "crossbar"})
            archive = shutil.make_archive(str(root / name), "zip", root_dir=root, base_dir=name)
            return archive, meta

        def done(result):
            archive, meta = result
            old = self.export_zip
            if old:
                shutil.rmtree(Path(old).parent, ignore_errors=True)
            if self.selected != (strategy, point):      # another point was clicked meanwhile
                shutil.rmtree(Path(archive).parent, ignore_errors=True)
                return dict(export_zip=None, export_status="")
            a, p = meta["accuracy"], meta["power"]
            return dict(export_zip=archive,
                        export_status=f"{strategy} point {point} exported: accuracy {a['mean']:.4f} "
                                      f"(95 % CI {a['ci95'][0]:.4f}–{a['ci95'][1]:.4f}), power {p['mean']:,.0f} "
                                      f"(a.u.); load it with --model exported:DIR")

        def failed(message):
            self._set(export_status=f"export failed: {message}", export_zip=None)

        return self.launch("export", job, label=f"exporting {strategy} point {point}…", status_param="export_status",
                           on_done=done, on_error=failed, export_zip=None)

    def use_point(self) -> None:
        """Load the selected point's architecture and g_u into the subnet editor."""
        if self.selected is None:
            return
        s = self.point_state(*self.selected)
        sp = self.layout
        arch = sp.decode(s)
        g = dict(zip(sp.layer_names(), s[sp.gu_slice]))
        depth = [int(d) for d in arch.depth]
        # one change of the whole subnet: the new g_u is in place when the architecture's watchers run
        with param.parameterized.batch_call_watchers(self):
            self.param.update(depth=depth, width=[float(w) for w in arch.width],
                              expand=[float(e[0]) for e in arch.expand],
                              g_u={n: float(g[n]) for n in self.present_layers(depth)})

    # ------------------------------------------------------------------ live search
    @param.depends("search", watch=True)
    def _search(self) -> None:
        from ..nas.search import run_search
        strategy, pop, gen = self.strategy, self.pop_size, self.n_gen
        latest, lock = {}, threading.Lock()

        def front(values) -> dict:
            """The estimated quantities of a front (accuracy, power, and energy/latency of a profile)."""
            return {k: np.asarray(values[k]).tolist() for k in FRONT_AXES if k in values}

        def show():
            with lock:
                info = latest.pop("info", None)
            if info is None or not self.running:
                return
            self.param.update(live={**front(info), "generation": int(info["generation"])},
                              progress=int(100 * info["generation"] / info["n_gen"]),
                              search_status=f"NSGA-II {strategy}: generation {int(info['generation'])} of "
                                            f"{info['n_gen']} (population {pop}) on the estimator…")

        def progress(info):
            # at most one front waits for the page (the newest), so a fast search never queues
            # redraws ahead of the Cancel click
            with lock:
                pending = "info" in latest
                latest["info"] = info
            if not pending:
                self.dispatch(show)

        def job(cancel):
            est, objectives = search_setup(self.nas_params.get("nas"), self.supernet_spec, self.store)
            return run_search(strategy, est, est.space, pop, gen, seed=0, progress=progress, cancel=cancel,
                              **objectives)

        def done(res):
            with lock:
                latest.clear()
            f = res.front
            return dict(live={**front({k: v[f] for k, v in res.values().items()}), "generation": res.n_gen},
                        search_status=f"NSGA-II {strategy} done: {int(f.sum())} estimated Pareto points after "
                                      f"{res.n_gen} generations ({res.seconds:.1f} s)")

        def cancelled():
            with lock:
                latest.clear()
            return f"NSGA-II {strategy} cancelled after {(self.live or {}).get('generation', 0)} generations"

        def failed(message):
            self._fail(message)
            self._set(search_status=f"NSGA-II {strategy} failed (the error is shown above) — earlier results kept")

        self.launch("search", job, label=f"NSGA-II {strategy}: population {pop}, {gen} generations on the estimator…",
                    job_class="curve", status_param="search_status", on_done=done, cancelled=cancelled, on_error=failed,
                    cancelling=f"NSGA-II {strategy}: cancelling…", live=None)


__all__ = ["CrossbarExplorer", "REGENERATE"]
