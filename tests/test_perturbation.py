"""Fig 5.1 perturbation explorer: ε*(w) of each SAM-family method against its closed form."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pytest

from workbench.analysis.perturbation import perturbation_profile
from workbench.hardware import KnobError
from workbench.plots.sharpness import perturbation_plot


@pytest.mark.parametrize("c,rho", [(0.05, 0.05), (0.2, 0.5)])
def test_profiles_match_closed_forms(c, rho):
    eta = 0.01
    ds = perturbation_profile(c, rho, n=101, eta=eta)
    w = ds.w.values
    g = np.ones_like(w)

    def closed(t):
        return rho * t**2 * g / np.linalg.norm(t * g)

    expected = {"sam": rho * g / np.linalg.norm(g), "asam": closed(np.abs(w) + eta),
                "samson2": closed((np.abs(w) + eta) / np.linalg.norm(w)),
                "samsoninf": closed((np.abs(w) + eta) / np.abs(w).max())}
    for m, e in expected.items():
        np.testing.assert_allclose(ds.epsilon.sel(optimizer=m).values, e, rtol=1e-10)
    # SAMSON∞ rescales ASAM by 1/max|w|: the larger the clipping domain, the smaller its step
    assert ds.epsilon.sel(optimizer="samsoninf").values.max() == pytest.approx(
        ds.epsilon.sel(optimizer="asam").values.max() / c)


def test_bad_knobs_are_refused_by_name():
    for kwargs, name in [({"c": 0.0}, "c"), ({"rho": -1.0}, "rho"), ({"n": 1}, "n"), ({"methods": ("adam",)}, "adam")]:
        with pytest.raises(KnobError, match=name):
            perturbation_profile(**kwargs)


def test_plot_has_one_curve_per_method():
    hv.extension("bokeh")
    over = perturbation_plot(perturbation_profile(0.1, 0.1, n=11))
    assert len(over) == 4 and {el.label for el in over} == {"SAM", "ASAM", "SAMSON₂", "SAMSON∞"}
