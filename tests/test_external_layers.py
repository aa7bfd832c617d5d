"""Networks from outside go through the same conversion to noisy layers: Conv1d (sensor and audio
models) is held by the memories; a layer no memory model holds is refused by name unless the user
keeps it in reliable digital memory on purpose, which the energy and power sums then leave out."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from workbench.analysis.montecarlo import mc_evaluate
from workbench.hardware import MemristorMemory, SRAMMemory
from workbench.knobs import KnobError
from workbench.nn import NoisyConv1d, layer_param_counts, noisy_layers, set_memory, to_noisy, unsupported_layers


def audio_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(2, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU(), nn.Conv1d(8, 8, 3, stride=2),
                         nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 4))


def test_conv1d_layers_become_noisy_and_an_ideal_memory_changes_nothing():
    ref = audio_net().eval()
    net = to_noisy(audio_net().eval())
    assert [type(m).__name__ for m in noisy_layers(net).values()] == ["NoisyConv1d", "NoisyConv1d", "NoisyLinear"]
    assert isinstance(net[0], NoisyConv1d) and net[3].stride == (2,)
    x = torch.randn(16, 2, 40)
    torch.testing.assert_close(net(x), ref(x))
    assert layer_param_counts(net) == {"0": 80, "3": 192, "7": 32}


def test_conv1d_reads_through_sram_flip_signs_at_the_rate_p():
    net = to_noisy(audio_net().eval(), binary=True)
    set_memory(net, SRAMMemory(p=0.2, bits=1))
    layer = net[3]
    flips = 0
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        w, _ = layer.read_weight(gen)
        flips += int((torch.sign(w) != torch.sign(layer.quantized_weight())).sum())
    n = 50 * layer.weight.numel()
    # binomial(n, 0.2): mean 0.2 n, std sqrt(n 0.2 0.8); 5 std either side
    assert abs(flips - 0.2 * n) < 5 * (n * 0.16) ** 0.5


def test_a_conv1d_network_is_evaluated_under_crossbar_noise_with_its_power():
    net = to_noisy(audio_net().eval())
    x, y = torch.randn(64, 2, 40), torch.randint(0, 4, (64,))
    ds = mc_evaluate(net, x, y, MemristorMemory(sigma_c=0.1), draws=5, seed=0, device="cpu")
    assert ds.sizes["draw"] == 5 and float(ds.power.mean()) > 0
    assert set(ds.layer.values) == {"0", "3", "7"}


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8 * 4 * 4)
        self.up = nn.ConvTranspose2d(8, 1, 2, stride=2)
        self.emb = nn.Embedding(10, 4)

    def forward(self, labels):
        return self.up(self.fc(self.emb(labels)).view(-1, 8, 4, 4))


def test_layers_no_memory_holds_are_refused_by_name_unless_kept_digital():
    assert unsupported_layers(Decoder()) == {"up": "ConvTranspose2d", "emb": "Embedding"}
    with pytest.raises(KnobError, match=r"up \(ConvTranspose2d\); emb \(Embedding\).*--digital"):
        to_noisy(Decoder())
    circ = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"))
    with pytest.raises(KnobError, match="padding_mode='circular'"):
        to_noisy(circ)
    net = to_noisy(Decoder(), digital=["up", "emb"])
    assert list(noisy_layers(net)) == ["fc"] and type(net.up) is nn.ConvTranspose2d
    assert layer_param_counts(net) == {"fc": 4 * 128}           # the digital layers are in no sum
    assert net(torch.tensor([1, 2])).shape == (2, 1, 8, 8)
