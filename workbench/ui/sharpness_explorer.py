"""State of the "Sharpness & robustness" page (thesis ch. 5); no Panel here.

It opens on the results of ``specs/sharpness_digits.json`` (shipped in ``data/store``).  The
optimizer and ρ pick one training configuration: when its network is in the store its robustness
curve appears at once, otherwise *Train* runs it in the background (live loss, progress, Cancel)
and then measures its curve.  The perturbation explorer (Fig 5.1) is computed instantly.
"""

from __future__ import annotations

from functools import partial

import param
import xarray as xr

from ..analysis.perturbation import perturbation_profile
from ..experiments import Store
from ..experiments.sharpness import LABELS, METHODS, SIGMA_C_GRID, method_config, noise_dim, robustness_study
from ..experiments.sweep import SHARPNESS_SPEC, load_spec, run_experiment
from ..keys import spec_key
from ..training.sam import RHO_DEFAULTS, RHO_GRIDS
from .base import BackgroundState, result_param

REGENERATE = "workbench sweep specs/sharpness_digits.json --cache-dir data/store"
#: every ρ of the thesis grids (Table 5.6), the choices of the ρ slider
RHO_CHOICES = sorted({r for grid in RHO_GRIDS.values() for r in grid})
#: results of the spec loaded by the page: experiment name → attribute
RESULTS = {"robustness": "robustness", "robustness_additive": "additive", "sharpness": "sharpness",
           "quantization": "quantization", "ood": "ood", "pcm_drift": "drift", "rho": "rho_sweep"}


def is_sharpness_aware(method: str) -> bool:
    return "sam" in METHODS.get(method, {})


class SharpnessExplorer(BackgroundState):
    """Knobs and results of the ch. 5 page."""

    job_kinds = (*RESULTS, "select", "train")
    cancel_kind = "train"

    method = param.Selector(default="samson2", objects=list(METHODS),
                            doc="training method (optimizer, clipping, noise)")
    rho = param.Number(0.2, bounds=(0.0, 10.0), inclusive_bounds=(False, True),
                       doc="neighbourhood size ρ of a sharpness-aware method")
    adabs = param.Boolean(True, doc="apply AdaBS (batch-norm statistics re-estimated under noise) before testing")
    noise = param.Selector(default="multiplicative", objects=["multiplicative", "additive"],
                           doc="conductance noise of the robustness curves")
    shown = param.ListSelector(default=["sgd", "sam", "asam", "samson2", "samsoninf"], objects=list(METHODS),
                               doc="methods drawn on the comparison plots")
    variant = param.Selector(default="samson2", objects=["sam", "asam", "samson2", "samsoninf"],
                             doc="m-sharpness definition (eq 3.24 / 5.5)")
    group = param.Selector(default="all", objects=["all", "normal", "clipping"],
                           doc="training modes in the correlation")
    seed = param.Integer(0, bounds=(0, 2**31 - 1), doc="seed of a network trained from the page")
    epochs = param.Integer(20, bounds=(1, 200), doc="epochs of a network trained from the page")
    pert_rho = param.Number(0.5, bounds=(0.0, 2.0), doc="ρ of the perturbation explorer")
    pert_c = param.Number(0.1, bounds=(0.01, 1.0), doc="weight domain ±c of the perturbation explorer")
    pert_p = param.Number(4.0, bounds=(1.0, 16.0), doc="norm p of the extra SAMSON curve of the perturbation explorer")

    train = param.Event(doc="train the selected configuration")
    cancel = param.Event(doc="cancel the running training")

    robustness = result_param()
    additive = result_param()
    sharpness = result_param()
    quantization = result_param()
    ood = result_param()
    drift = result_param()
    rho_sweep = result_param()
    selected = result_param(doc="robustness curve of the selected configuration (None: not trained yet)")
    selected_label = param.String("", precedence=-1)
    perturbation = result_param()
    history = param.List(default=[], precedence=-1, doc="training loss per epoch of the live run")
    rho_note = param.String("", precedence=-1, doc="what the last change of method did to ρ, in words")

    def __init__(self, store: Store | None = None, spec_path=SHARPNESS_SPEC, device: str = "auto", autorun: bool = True,
                 **params):
        super().__init__(**params)
        self.store = store or Store()
        self.device = device
        self.spec = load_spec(spec_path)
        self._method_sets_rho = False
        self._perturb()
        if autorun:
            self.load()

    # ------------------------------------------------------------------ spec results
    def load(self) -> None:
        """Load (or compute, in the background) every experiment of the spec, then the selection."""
        for name, target in RESULTS.items():
            if name not in self.spec["experiments"]:
                continue
            params = self.spec["experiments"][name]

            def job(cancel, name=name, params=params):
                return run_experiment(name, params, self.store, device=self.device, cancel=cancel)

            self.launch(name, job, on_done=partial(self._loaded, target))
        self._select()

    def _loaded(self, target: str, ds: xr.Dataset) -> None:
        def apply():
            self.param.update(**{target: ds})
            if target in ("robustness", "additive") and self.selected is None and not self.running:
                self._select()          # the study has just trained the selected network
        self.dispatch(apply)

    # ------------------------------------------------------------------ the selected configuration
    def config(self):
        """The TrainConfig of the selected method, ρ (sharpness-aware methods only), seed and epochs."""
        rho = self.rho if is_sharpness_aware(self.method) else None
        return method_config(self.method, self.seed, rho=rho, epochs=self.epochs)

    def describe(self) -> str:
        text = LABELS[self.method]
        if is_sharpness_aware(self.method):
            text += f", ρ = {self.rho:g}"
        return text + f", seed {self.seed}"

    def is_trained(self) -> bool:
        cfg = self.config()
        return self.store.load_object("weights", spec_key("weights", cfg.to_dict())) is not None

    def _study_spec(self, noise: str | None = None) -> dict:
        name = "robustness" if (noise or self.noise) == "multiplicative" else "robustness_additive"
        return self.spec["experiments"].get(name, {})

    def adabs_choices(self, noise: str | None = None) -> list[bool]:
        """The AdaBS settings the study of ``noise`` (default: the current mode) was run with; the
        shipped additive study was run without AdaBS only."""
        return [bool(a) for a in self._study_spec(noise).get("adabs", [False, True])]

    def effective_adabs(self) -> bool:
        """AdaBS as the curves use it: the ticked setting where the current study has it, else the
        only setting it was run with (the page says so next to the checkbox)."""
        choices = self.adabs_choices()
        return self.adabs if self.adabs in choices else choices[0]

    def _curve_params(self) -> dict:
        spec = self.spec["experiments"]["robustness" if self.noise == "multiplicative" else "robustness_additive"]
        return {"noise": self.noise, "levels": spec.get("levels", SIGMA_C_GRID), "g_u": spec.get("g_u", 25.0),
                "draws": spec.get("draws", 10)}

    def _curve(self, cancel) -> xr.Dataset:
        kw = self._curve_params()
        rho = self.rho if is_sharpness_aware(self.method) else None
        return robustness_study([self.method], [self.seed], adabs=[self.effective_adabs()], rho=rho,
                                train={"epochs": self.epochs}, store=self.store, device=self.device, cancel=cancel,
                                **kw)

    @param.depends("method", watch=True)
    def _method_rho(self) -> None:
        """Switching method starts from that method's thesis ρ (Table 5.7), and ``rho_note`` says so."""
        label = LABELS[self.method]
        if not is_sharpness_aware(self.method):
            self.rho_note = f"ρ does not apply to {label}: it is not a sharpness-aware method."
            return
        rho = self.default_rho()
        note = (f"ρ set to {rho:g}, the thesis' value for {label} (Table 5.7)" if rho != self.rho
                else f"ρ = {rho:g} is the thesis' value for {label} (Table 5.7)")
        self._method_sets_rho = True
        try:
            self.rho = rho
        finally:
            self._method_sets_rho = False
        self.rho_note = note + "; move the slider to try another."

    @param.depends("rho", watch=True)
    def _rho_moved(self) -> None:
        """A ρ chosen after the method: the note about the method's ρ no longer holds."""
        if not self._method_sets_rho:
            self.rho_note = ""

    @param.depends("method", "rho", "adabs", "noise", "seed", "epochs", watch=True)
    def _select(self) -> None:
        """Show the selected configuration's curve if its network exists; else offer training."""
        if self.running:
            return
        label = self.describe()
        if not self.is_trained():
            self.runner.cancel("select")          # an earlier selection's curve must not arrive now
            self.param.update(selected=None, selected_label=label,
                              status=f"{label}: not trained yet — press Train (about 10–30 s on a CPU)")
            return
        ds = self._from_study()
        if ds is not None:
            self.runner.cancel("select")
            self.param.update(selected=ds, selected_label=label, status=f"{label}: {self._summary(ds)}", error="")
            return

        def done(ds):
            return dict(selected=ds, selected_label=label, status=f"{label}: {self._summary(ds)}")

        self.launch("select", self._curve, label=f"{label}: measuring its robustness curve…", on_done=done,
                    job_class="curve")

    def _from_study(self) -> xr.Dataset | None:
        """The selected network's curve read from the loaded study of the current noise mode when
        that study trained exactly this network (same training config) and measured it with the
        AdaBS setting in use: the same cells ``_curve`` would compute, without computing them."""
        ds = self.robustness if self.noise == "multiplicative" else self.additive
        if ds is None:
            return None
        adabs = self.effective_adabs()
        if self.method not in ds.method.values or self.seed not in ds.seed.values or adabs not in ds.adabs.values:
            return None
        spec = self._study_spec()
        extra = {"base": spec["base"]} if "base" in spec else {}
        study_cfg = method_config(self.method, self.seed, rho=None, **extra, **(spec.get("train") or {}))
        if study_cfg.to_dict() != self.config().to_dict():
            return None
        # (a list of booleans given to sel would be read as a mask, hence isel for adabs)
        return ds.sel({"method": [self.method], "seed": [self.seed]}).isel(
            adabs=[[bool(a) for a in ds.adabs.values].index(adabs)])

    def _summary(self, ds: xr.Dataset) -> str:
        """Accuracy of the curve at a few noise levels, saying whether AdaBS was applied; at zero
        noise with AdaBS it can differ from the clean accuracy (the batch-norm statistics are
        re-estimated even without noise)."""
        m = ds.accuracy_mean.isel(method=0, seed=0, adabs=0)
        adabs = bool(ds.adabs.values[0])
        symbol, unit = ("σ_c", "") if ds.attrs.get("level_name") == "sigma_c" else ("σ", " µS")
        parts = [f"{float(v):.3f} at {symbol} = {float(lv):g}{unit}" for lv, v in zip(m[noise_dim(ds)].values, m.values)
                 if float(lv) in (0.0, 0.2, 0.4) or (self.noise == "additive" and float(lv) in (1.0, 2.0))]
        clean = float(ds.clean_accuracy.values.ravel()[0])
        return (f"clean accuracy {clean:.3f} (no noise, no AdaBS); {'with' if adabs else 'without'} AdaBS, "
                f"mean accuracy " + ", ".join(parts))

    def _fail(self, message: str) -> None:
        """A failed job, in plain words: the project's own checks already speak plainly (their
        message is kept without the exception's class name); anything else is unexpected."""
        kind, _, text = message.partition(": ")
        plain = kind in ("KnobError", "ValueError", "URLValueError") and text
        super()._fail(text if plain else "an unexpected error stopped this computation (the server log has "
                      "the details)")

    @param.depends("train", watch=True)
    def _train(self) -> None:
        from ..experiments import train_model
        cfg = self.config()
        label = self.describe()
        losses: list[float] = []

        def progress(info):
            losses.append(float(info["loss"]))
            self._set(history=list(losses), progress=int(100 * info["epoch"] / info["epochs"]))

        def job(cancel):
            train_model(cfg, self.store, device=self.device, progress=progress, cancel=cancel)
            return self._curve(cancel)

        def done(ds):
            return dict(selected=ds, selected_label=label, status=f"{label} trained: {self._summary(ds)}")

        self.launch("train", job, label=f"training {label} for {cfg.epochs} epochs…", on_done=done,
                    job_class="training", cancelled=f"training {label} cancelled", history=[])

    # ------------------------------------------------------------------ Fig 5.1
    @param.depends("pert_rho", "pert_c", "pert_p", watch=True)
    def _perturb(self) -> None:
        self.perturbation = perturbation_profile(self.pert_c, self.pert_rho, samson_p=self.pert_p)

    def default_rho(self) -> float:
        """The thesis' ρ of the selected method (Table 5.7), or the method's default."""
        over = METHODS[self.method]
        return float(over.get("rho", RHO_DEFAULTS.get(over.get("sam", ""), 0.5)))


__all__ = ["REGENERATE", "RHO_CHOICES", "SharpnessExplorer", "is_sharpness_aware"]
