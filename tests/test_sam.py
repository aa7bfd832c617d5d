"""SAM, ASAM and SAMSON (eq 3.22–3.26, 5.1–5.3, Annex A): perturbations, ρ → 0, batch norm,
checkpoints, clipping, validation and the factory."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from workbench.hardware import KnobError
from workbench.training.sam import (
    ASAM,
    RHO_DEFAULTS,
    RHO_GRIDS,
    SAM,
    SAMSON,
    SAMFamily,
    disable_running_stats,
    enable_running_stats,
    frozen_running_stats,
    make_sam_optimizer,
)

pytestmark = pytest.mark.usefixtures("single_thread")


class Net(nn.Module):
    """conv + batch norm + linear, small enough for exact comparisons."""

    def __init__(self, bn_momentum: float | None = 0.1):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4, momentum=bn_momentum)
        self.fc = nn.Linear(4 * 6 * 6, 5)
        with torch.no_grad():  # non-trivial batch-norm affine parameters
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


def make_net(seed: int = 0, **kw) -> Net:
    torch.manual_seed(seed)
    return Net(**kw)


def make_batches(n: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, 6, 6, generator=g), torch.randint(0, 5, (8,), generator=g)) for _ in range(n)]


def backward_at(model, x, y):
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss


def sam_step(model, opt, x, y):
    """The documented pattern: pass 1 outside (after zero_grad), pass 2 in the closure."""
    opt.zero_grad()
    backward_at(model, x, y)
    return opt.step(lambda: backward_at(model, x, y))


def plain_step(model, opt, x, y):
    opt.zero_grad()
    backward_at(model, x, y)
    opt.step()


# ---------------------------------------------------------------------------------------------
# independent reference of Annex A's math (written from the listing, plain loops, float64)


def annex_a_perturbation(model, rho, eta=0.01, norm="inf", variant="samson"):
    """ε* per parameter name: T_w = |W|+η (ASAM) or (|W|+η)/‖W‖_p (SAMSON) on names containing
    'weight', 1 elsewhere; ε = ρ · T_w · (T_w ∇L) / (‖(T_w ∇L) over all params‖₂ + 1e-16)."""
    t_ws, scaled = {}, {}
    for n, p in model.named_parameters():
        if p.grad is None:
            continue
        w = p.detach().double()
        g = p.grad.detach().double()
        if variant != "sam" and "weight" in n:
            t_w = w.abs() + eta
            if variant == "samson":
                t_w = t_w / torch.norm(w, p=float(norm))
        else:
            t_w = torch.ones_like(w)
        t_ws[n] = t_w
        scaled[n] = g * t_w
    wgrad_norm = torch.norm(torch.stack([torch.norm(v, p=2) for v in scaled.values()]), p=2) + 1e-16
    return {n: t_ws[n] * scaled[n] * (rho / wgrad_norm) for n in scaled}


def grads_of(model, seed=3):
    x, y = make_batches(1, seed)[0]
    model.train()
    model.zero_grad()
    backward_at(model, x, y)


# ---------------------------------------------------------------------------------------------
# ACCEPTANCE: perturbations


@pytest.mark.parametrize("p", [2.0, math.inf, "inf", 3.0, 1.0])
def test_samson_perturbation_matches_annex_a(p):
    model = make_net()
    grads_of(model)
    opt = SAMSON(model, torch.optim.SGD, rho=0.5, p=p, lr=0.1)
    eps = opt.perturbation()
    ref = annex_a_perturbation(model, rho=0.5, eta=0.01, norm=p, variant="samson")
    assert set(eps) == set(ref) == {n for n, _ in model.named_parameters()}
    for n in ref:
        torch.testing.assert_close(eps[n].double(), ref[n], atol=1e-6, rtol=0, msg=n)
    # T_w only on tensors named 'weight' (bn.weight included, as in Annex A): the biases' ε is ρ g / ‖T g‖
    gnorm = math.sqrt(sum(float((pp.grad.double() * (t if "weight" in n else 1)).pow(2).sum())
                          for (n, pp), t in zip(model.named_parameters(),
                                                [(pp.detach().double().abs() + 0.01)
                                                 / torch.norm(pp.detach().double(), p=float(p))
                                                 for _, pp in model.named_parameters()])))
    torch.testing.assert_close(eps["fc.bias"].double(), 0.5 * model.fc.bias.grad.double() / gnorm, atol=1e-7, rtol=0)


def test_samson_2_and_inf_differ_and_satisfy_the_constraint():
    """‖T_w⁻¹ ε*‖₂ = ρ (the max of eq 5.2 is on the boundary), and p changes ε*."""
    model = make_net()
    grads_of(model)
    out = {}
    for p in (2.0, math.inf):
        opt = SAMSON(model, torch.optim.SGD, rho=0.7, p=p, lr=0.1)
        eps = opt.perturbation()
        ratio2 = 0.0
        for n, w in model.named_parameters():
            t = (w.detach().double().abs() + 0.01) / torch.linalg.vector_norm(w.detach().double(), ord=p) \
                if "weight" in n else torch.ones_like(w, dtype=torch.float64)
            ratio2 += float((eps[n].double() / t).pow(2).sum())
        assert math.sqrt(ratio2) == pytest.approx(0.7, rel=1e-5)
        out[p] = eps
    assert not torch.allclose(out[2.0]["conv.weight"], out[math.inf]["conv.weight"])


def test_sam_and_asam_match_closed_forms():
    model = make_net()
    grads_of(model)
    names = [n for n, _ in model.named_parameters()]
    g = {n: w.grad.detach().double() for n, w in model.named_parameters()}
    # SAM (eq 3.23): ε = ρ ∇L / ‖∇L‖₂ over the concatenation of all gradients
    eps = SAM(model.parameters(), torch.optim.SGD, rho=0.2, lr=0.1).perturbation()
    gn = torch.cat([g[n].flatten() for n in names]).norm()
    for k, n in enumerate(names):
        torch.testing.assert_close(eps[f"param{k}"].double(), 0.2 * g[n] / gn, atol=1e-7, rtol=0)
    assert math.sqrt(sum(float(e.double().pow(2).sum()) for e in eps.values())) == pytest.approx(0.2, rel=1e-6)
    # ASAM (eq 3.26): ε = ρ T² ∇L / ‖T ∇L‖₂ with T = |W| + η on 'weight' tensors, 1 elsewhere
    eps = ASAM(model.named_parameters(), torch.optim.SGD, rho=1.5, eta=0.01, lr=0.1).perturbation()
    t = {n: (w.detach().double().abs() + 0.01) if n.endswith("weight") else torch.ones_like(g[n])
         for n, w in model.named_parameters()}
    tgn = torch.cat([(t[n] * g[n]).flatten() for n in names]).norm()
    for n in names:
        torch.testing.assert_close(eps[n].double(), 1.5 * t[n] ** 2 * g[n] / tgn, atol=1e-6, rtol=0)
    ref = annex_a_perturbation(model, rho=1.5, variant="asam")
    for n in names:
        torch.testing.assert_close(eps[n].double(), ref[n], atol=1e-6, rtol=0)


def test_first_step_adds_perturbation_and_second_step_restores_exactly():
    model = make_net()
    grads_of(model)
    before = {n: w.detach().clone() for n, w in model.named_parameters()}
    opt = SAMSON(model, torch.optim.SGD, rho=0.5, p=math.inf, lr=0.0)  # lr 0: the base step is a no-op
    eps = opt.perturbation()
    opt.first_step()
    for n, w in model.named_parameters():
        torch.testing.assert_close(w.detach() - before[n], eps[n], atol=1e-6, rtol=1e-5)
    with pytest.raises(RuntimeError, match="twice"):
        opt.first_step()
    opt.second_step(zero_grad=True)
    for n, w in model.named_parameters():
        assert torch.equal(w.detach(), before[n]), n
        assert w.grad is None
    with pytest.raises(RuntimeError, match="without first_step"):
        opt.second_step()
    with pytest.raises(RuntimeError, match="no gradients"):
        opt.first_step()
    with pytest.raises(ValueError, match="closure"):
        opt.step()


@pytest.mark.parametrize("variant", ["sam", "asam", "samson"])
def test_step_is_base_step_at_w_with_gradient_at_w_plus_eps(variant):
    """Algorithm 2 by hand: ε from Annex A's math, ∇L at W + ε on a copy, then SGD (momentum,
    weight decay) from W: W − lr (∇L(W + ε) + λ W) on the first step."""
    model = make_net()
    x, y = make_batches(1)[0]
    lr, wd, rho = 0.1, 5e-4, 0.5
    twin = copy.deepcopy(model)
    grads_of_batch = lambda m: (m.zero_grad(), backward_at(m, x, y))  # noqa: E731
    grads_of_batch(twin)
    eps = annex_a_perturbation(twin, rho=rho, norm=math.inf, variant=variant)
    w0 = {n: w.detach().clone() for n, w in twin.named_parameters()}
    with torch.no_grad():
        for n, w in twin.named_parameters():
            w.add_(eps[n].float())
    grads_of_batch(twin)
    expected = {n: w0[n] - lr * (w.grad + wd * w0[n]) for n, w in twin.named_parameters()}

    opt = SAMFamily(model, torch.optim.SGD, rho, variant=variant, p=math.inf, lr=lr, momentum=0.9, weight_decay=wd)
    sam_step(model, opt, x, y)
    for n, w in model.named_parameters():
        torch.testing.assert_close(w.detach(), expected[n], atol=1e-6, rtol=0, msg=n)


def test_zero_gradient_gives_zero_perturbation():
    model = make_net()
    for w in model.parameters():
        w.grad = torch.zeros_like(w)
    for opt in (SAM(model, lr=0.1), ASAM(model, lr=0.1), SAMSON(model, lr=0.1, p=2)):
        eps = opt.perturbation()
        assert all(torch.equal(e, torch.zeros_like(e)) for e in eps.values())


# ---------------------------------------------------------------------------------------------
# ACCEPTANCE: ρ → 0 is the base optimizer


BASES = {
    "sgd": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)),
    "adam": (torch.optim.Adam, dict(lr=1e-2, weight_decay=1e-4)),
}
VARIANTS = {
    "sam": lambda m, rho, cls, kw: SAM(m, cls, rho, **kw),
    "asam": lambda m, rho, cls, kw: ASAM(m, cls, rho, **kw),
    "samson2": lambda m, rho, cls, kw: SAMSON(m, cls, rho, p=2, **kw),
    "samsoninf": lambda m, rho, cls, kw: SAMSON(m, cls, rho, p=math.inf, **kw),
}


@pytest.mark.parametrize("base", sorted(BASES))
@pytest.mark.parametrize("rho", [0.0, 1e-12])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rho_to_zero_is_the_base_optimizer(variant, rho, base):
    cls, kw = BASES[base]
    batches = make_batches(5)
    ref = make_net()
    ref_opt = cls(ref.parameters(), **kw)
    model = make_net()
    opt = VARIANTS[variant](model, rho, cls, kw)
    for x, y in batches:
        plain_step(ref, ref_opt, x, y)
        sam_step(model, opt, x, y)
    moved = 0.0
    for (n, w), w_ref, w0 in zip(model.named_parameters(), ref.parameters(), make_net().parameters()):
        torch.testing.assert_close(w.detach(), w_ref.detach(), atol=1e-6, rtol=0, msg=n)
        moved = max(moved, float((w_ref.detach() - w0.detach()).abs().max()))
    assert moved > 1e-3  # the comparison is not vacuous: the base optimizer did move the weights
    for b, b_ref in zip(model.buffers(), ref.buffers()):  # and batch norm saw one pass per step
        torch.testing.assert_close(b, b_ref, atol=1e-6, rtol=0)


def test_positive_rho_differs_from_the_base_optimizer():
    cls, kw = BASES["sgd"]
    ref, model = make_net(), make_net()
    ref_opt, opt = cls(ref.parameters(), **kw), SAMSON(model, cls, 0.5, p=2, **kw)
    for x, y in make_batches(3):
        plain_step(ref, ref_opt, x, y)
        sam_step(model, opt, x, y)
    assert max(float((w - w_ref).detach().abs().max()) for w, w_ref in zip(model.parameters(), ref.parameters())) > 1e-4


# ---------------------------------------------------------------------------------------------
# ACCEPTANCE: batch-norm running statistics move once per step


def bn_state(model):
    return {k: v.clone() for k, v in model.bn.state_dict().items() if "running" in k or "num_batches" in k}


def assert_same_bn(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("bn_momentum", [0.1, None])
@pytest.mark.parametrize("pattern", ["step_closure", "two_calls"])
def test_batchnorm_running_stats_updated_once_per_step(bn_momentum, pattern):
    model = make_net(bn_momentum=bn_momentum).train()
    x, y = make_batches(1)[0]
    once = copy.deepcopy(model)
    with torch.no_grad():
        once(x)  # one plain train-mode forward from the same state
    expected = bn_state(once)
    start = bn_state(model)
    opt = SAMSON(model, torch.optim.SGD, rho=1.0, p=math.inf, lr=0.1, momentum=0.9)
    if pattern == "step_closure":
        sam_step(model, opt, x, y)
    else:
        backward_at(model, x, y)
        opt.first_step(zero_grad=True)
        with frozen_running_stats(model):
            backward_at(model, x, y)
        opt.second_step(zero_grad=True)
    got = bn_state(model)
    assert not torch.equal(got["running_mean"], start["running_mean"])  # it did move
    assert_same_bn(got, expected)  # ... exactly as much as one plain forward
    assert model.bn.track_running_stats is True and model.bn.momentum == bn_momentum  # restored


def test_batchnorm_without_freezing_moves_twice():
    """The negative control: the same two passes without the freeze move the statistics twice."""
    model = make_net().train()
    x, y = make_batches(1)[0]
    once = copy.deepcopy(model)
    with torch.no_grad():
        once(x)
    opt = SAMSON(model.named_parameters(), torch.optim.SGD, rho=1.0, p=math.inf, lr=0.1)  # no model: no freeze
    sam_step(model, opt, x, y)
    got = bn_state(model)
    assert int(got["num_batches_tracked"]) == 2
    assert not torch.allclose(got["running_mean"], bn_state(once)["running_mean"])


def test_disable_enable_running_stats_helpers():
    model = make_net().train()
    x = make_batches(1)[0][0]
    before = bn_state(model)
    disable_running_stats(model)
    disable_running_stats(model)  # idempotent: the original flags are kept
    with torch.no_grad():
        out_frozen = model(x)
    assert_same_bn(bn_state(model), before)
    enable_running_stats(model)
    assert model.bn.track_running_stats is True and model.bn.momentum == 0.1
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out, out_frozen, atol=0, rtol=0)  # same batch-statistics normalisation
    assert int(model.bn.num_batches_tracked) == 1


# ---------------------------------------------------------------------------------------------
# checkpoints


@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_state_dict_round_trip_resumes_identically(base):
    cls, kw = BASES[base]
    batches = make_batches(6)
    model = make_net()
    opt = SAMSON(model, cls, rho=0.5, p=math.inf, clip=2.0, **kw)
    for x, y in batches[:3]:
        sam_step(model, opt, x, y)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    sd_opt = opt.state_dict()
    assert sd_opt["param_groups"][0]["rho"] == 0.5 and sd_opt["param_groups"][0]["p"] == math.inf
    state_key = "momentum_buffer" if base == "sgd" else "exp_avg"
    assert len(sd_opt["state"]) == len(list(model.parameters()))
    assert all(state_key in s for s in sd_opt["state"].values())

    for x, y in batches[3:]:
        sam_step(model, opt, x, y)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    resumed = make_net(seed=7)
    resumed.load_state_dict(ckpt["model"])
    opt2 = SAMSON(resumed, cls, rho=0.05, p=math.inf, clip=2.0, **kw)  # rho comes back from the checkpoint
    opt2.load_state_dict(ckpt["opt"])
    assert opt2.param_groups[0]["rho"] == 0.5
    assert opt2.param_groups is opt2.base_optimizer.param_groups
    fresh = make_net(seed=7)
    fresh.load_state_dict(ckpt["model"])
    opt3 = SAMSON(fresh, cls, rho=0.5, p=math.inf, clip=2.0, **kw)  # negative control: no optimizer state
    for x, y in batches[3:]:
        sam_step(resumed, opt2, x, y)
        sam_step(fresh, opt3, x, y)
    for (n, w), w2 in zip(model.named_parameters(), resumed.parameters()):
        assert torch.equal(w, w2), n
    assert any(not torch.allclose(w, w3) for w, w3 in zip(model.parameters(), fresh.parameters()))


def test_state_dict_checks():
    model = make_net()
    sd = SAMSON(model, lr=0.1).state_dict()
    with pytest.raises(ValueError, match="samson"):
        ASAM(model, lr=0.1).load_state_dict(sd)
    sd["param_groups"][0]["rho"] = -1.0
    with pytest.raises(KnobError, match="rho"):
        SAMSON(model, lr=0.1).load_state_dict(sd)


def test_lr_scheduler_drives_the_base_optimizer():
    model = make_net()
    opt = SAM(model, torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x, y = make_batches(1)[0]
    sam_step(model, opt, x, y)
    sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


# ---------------------------------------------------------------------------------------------
# clipping (eq 3.18, Algorithm 2)


@pytest.mark.parametrize("name", ["sgd", "sam", "asam", "samson2", "samsoninf"])
def test_clipping_bounds_the_conv_linear_weights_only(name):
    """One rule with nn.clip_weights_: eq 3.18 bounds the conv/linear weights; batch-norm scales
    (also named 'weight') and biases are stored reliably and are not clipped."""
    model = make_net()
    with torch.no_grad():
        model.fc.bias.fill_(1.0)
    opt = make_sam_optimizer(name, model, lr=0.5, clip=0.05)
    for x, y in make_batches(3):
        if name == "sgd":
            plain_step(model, opt, x, y)
        else:
            sam_step(model, opt, x, y)
    for w in (model.conv.weight, model.fc.weight):
        assert float(w.detach().abs().max()) == pytest.approx(0.05)   # bounded, and the bound is active
    assert float(model.bn.weight.abs().max()) > 0.1    # initialised in [0.5, 1.5]; clipped it would be ≤ 0.05
    assert float(model.fc.bias.abs().max()) > 0.5


def test_clipping_follows_the_noisy_layers_of_a_workbench_model():
    """On a model with noisy layers the clipped tensors are exactly the ones nn.clip_weights_ bounds."""
    from workbench.nn import build_model, noisy_layers
    from workbench.training.sam import clipped_weights
    model = build_model("wrn", in_channels=1, num_classes=10, image_size=8, width=0.25, depth=10)
    assert {id(w) for w in clipped_weights(model)} == {id(m.weight) for m in noisy_layers(model).values()}
    assert all(id(m.weight) not in {id(w) for w in clipped_weights(model)}
               for m in model.modules() if isinstance(m, nn.BatchNorm2d))


# ---------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize("kwargs, knob, range_text", [
    (dict(rho=-0.1), "rho", "[0, inf)"),
    (dict(rho=float("nan")), "rho", "[0, inf)"),
    (dict(rho=math.inf), "rho", "[0, inf)"),
    (dict(rho="big"), "rho", "[0, inf)"),
    (dict(eta=0.0), "eta", "(0, inf)"),
    (dict(eta=-0.01), "eta", "(0, inf)"),
    (dict(p=0.5), "p", "[1, inf]"),
    (dict(p=float("nan")), "p", "[1, inf]"),
    (dict(clip=0.0), "clip", "(0, inf)"),
    (dict(clip=-1.0), "clip", "(0, inf)"),
])
def test_invalid_hyperparameters_raise_knob_error(kwargs, knob, range_text):
    with pytest.raises(KnobError) as exc:
        SAMSON(make_net(), torch.optim.SGD, **{"rho": 0.5, **kwargs}, lr=0.1)
    assert f"{knob}=" in str(exc.value) and range_text in str(exc.value)


def test_other_invalid_inputs():
    model = make_net()
    with pytest.raises(KnobError, match="rho"):  # a param group's own rho is checked too
        SAM([{"params": list(model.parameters()), "rho": -1.0}], torch.optim.SGD, lr=0.1)
    with pytest.raises(KnobError, match="rho"):
        SAMSON(model, lr=0.1).add_param_group({"params": [nn.Parameter(torch.ones(2))], "rho": -2.0,
                                               "param_names": ["extra.weight"]})
    with pytest.raises(ValueError, match="names"):  # ASAM/SAMSON must know which tensors are weights
        ASAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="model"):
        SAM(model.parameters(), torch.optim.SGD, lr=0.1, clip=0.1)
    with pytest.raises(TypeError, match="Optimizer"):
        SAM(model, "sgd", lr=0.1)
    with pytest.raises(TypeError, match="clash"):
        SAM(model, torch.optim.Adadelta, lr=0.1)
    with pytest.raises(KnobError, match="variant"):
        SAMFamily(model, torch.optim.SGD, variant="gsam", lr=0.1)
    with pytest.raises(KnobError, match="name="):
        make_sam_optimizer("gsam", model)
    with pytest.raises(KnobError, match="base="):
        make_sam_optimizer("sam", model, base="rmsprop")


def test_added_param_group_is_optimized():
    model = make_net()
    extra = nn.Parameter(torch.ones(3))
    opt = SAMSON(model, torch.optim.SGD, rho=0.5, lr=0.1)
    opt.add_param_group({"params": [("extra.weight", extra)], "rho": 0.2})
    assert opt.base_optimizer.param_groups[-1]["rho"] == 0.2 and opt.param_groups[-1]["p"] == 2.0
    x, y = make_batches(1)[0]
    backward_at(model, x, y)
    extra.grad = torch.ones(3)
    assert "extra.weight" in opt.perturbation()
    opt.step(lambda: (backward_at(model, x, y), setattr(extra, "grad", torch.ones(3)))[0])
    assert float(extra.detach().max()) < 1.0


# ---------------------------------------------------------------------------------------------
# the factory


@pytest.mark.parametrize("base", ["sgd", "adam"])
@pytest.mark.parametrize("name", ["sgd", "sam", "asam", "samson2", "samsoninf"])
def test_factory_builds_each_name(name, base):
    model = make_net()
    opt = make_sam_optimizer(name, model, base=base, lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    base_cls = torch.optim.SGD if base == "sgd" else torch.optim.Adam
    if name == "sgd":
        assert type(opt) is base_cls
        inner = opt
    else:
        expected = {"sam": SAM, "asam": ASAM, "samson2": SAMSON, "samsoninf": SAMSON}[name]
        assert type(opt) is expected and type(opt.base_optimizer) is base_cls
        assert opt.param_groups[0]["rho"] == RHO_DEFAULTS[name]
        if name.startswith("samson"):
            assert opt.param_groups[0]["p"] == (2.0 if name == "samson2" else math.inf)
        inner = opt.base_optimizer
    g = inner.param_groups[0]
    assert g["lr"] == 0.05 and g["weight_decay"] == 5e-4
    if base == "sgd":
        assert g["momentum"] == 0.9 and g["nesterov"] is True
    # it trains: the loss on a fixed batch goes down
    x, y = make_batches(1)[0]
    with torch.no_grad():
        before = float(F.cross_entropy(model(x), y))
    for _ in range(5):
        if name == "sgd":
            plain_step(model, opt, x, y)
        else:
            sam_step(model, opt, x, y)
    with torch.no_grad():
        assert float(F.cross_entropy(model(x), y)) < before


def test_factory_rho_and_grids():
    assert RHO_GRIDS["sam"] == (0.05, 0.1, 0.2, 0.5)
    assert RHO_GRIDS["asam"] == (0.5, 1.0, 1.5, 2.0)
    assert RHO_GRIDS["samson2"] == RHO_GRIDS["samsoninf"] == (0.1, 0.2, 0.5, 1.0)
    opt = make_sam_optimizer("samsoninf", make_net(), rho=1.0)
    assert opt.param_groups[0]["rho"] == 1.0 and opt.base_optimizer.param_groups[0]["lr"] == 0.1
    assert make_sam_optimizer("sam", make_net(), base="adam").base_optimizer.param_groups[0]["lr"] == 1e-3
