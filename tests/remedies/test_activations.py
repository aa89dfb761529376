"""Tests for graddoctor.remedies.activations (swap_activations_)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from graddoctor._module_types import is_saturating
from graddoctor.remedies.activations import swap_activations_


def sample_std(tensor: torch.Tensor) -> float:
    """Naive population standard deviation (plain Python loop)."""
    values = tensor.detach().double().flatten().tolist()
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def tanh_mlp(width: int = 64, depth: int = 3, act: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    model = nn.Sequential()
    for i in range(depth):
        model.add_module(f"fc{i}", nn.Linear(8 if i == 0 else width, width))
        model.add_module(f"act{i}", act())
    model.add_module("out", nn.Linear(width, 1))
    return model


class ListNet(nn.Module):
    """Layers in a ModuleList, applied in order."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.Linear(6, 16), nn.Sigmoid(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


class NestedNet(nn.Module):
    """Custom modules inside a Sequential, plus ModuleDict heads."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 12)
        self.stem_act = nn.Tanh()
        self.enc = nn.Sequential(Block(12), Block(12))
        self.heads = nn.ModuleDict(
            {"a": nn.Sequential(nn.Linear(12, 3), nn.Softsign()), "b": nn.Linear(12, 1)}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.enc(self.stem_act(self.stem(x)))
        return torch.cat([self.heads["a"](h), self.heads["b"](h)], dim=1)


class FunctionalNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(x))


def saturating_names(model: nn.Module) -> list[str]:
    return [
        name for name, m in model.named_modules() if type(m) in (nn.Sigmoid, nn.Tanh, nn.Softsign)
    ]


def test_sequential_swap_replaces_every_saturating_module_and_reports() -> None:
    torch.manual_seed(0)
    model = tanh_mlp()
    records = swap_activations_(model, to="relu")
    assert [r["name"] for r in records] == ["act0", "act1", "act2"]
    assert all(r["old"] == "Tanh" and r["new"] == "ReLU" for r in records)
    assert [r["reinitialised_layer"] for r in records] == ["fc0", "fc1", "fc2"]
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU] * 3 + [nn.Linear]


def test_modulelist_model_swaps_in_place_and_runs() -> None:
    torch.manual_seed(1)
    model = ListNet()
    records = swap_activations_(model, to="elu")
    assert [(r["name"], r["old"], r["reinitialised_layer"]) for r in records] == [
        ("layers.1", "Sigmoid", "layers.0"),
        ("layers.3", "Tanh", "layers.2"),
    ]
    assert isinstance(model.layers[1], nn.ELU) and isinstance(model.layers[3], nn.ELU)
    assert len(model.layers) == 5
    out = model(torch.randn(5, 6))
    out.sum().backward()
    assert out.shape == (5, 2)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_nested_custom_modules_every_kind_of_container() -> None:
    torch.manual_seed(2)
    model = NestedNet()
    expected = saturating_names(model)
    assert expected == ["stem_act", "enc.0.act", "enc.1.act", "heads.a.1"]
    records = swap_activations_(model, to="gelu")
    assert [r["name"] for r in records] == expected
    assert [r["reinitialised_layer"] for r in records] == [
        "stem",
        "enc.0.fc",
        "enc.1.fc",
        "heads.a.0",
    ]
    assert saturating_names(model) == []
    assert isinstance(model.enc[1].act, nn.GELU) and isinstance(model.heads["a"][1], nn.GELU)
    out = model(torch.randn(7, 4))
    out.pow(2).mean().backward()
    assert out.shape == (7, 4)


def test_only_by_type_and_by_glob() -> None:
    model = NestedNet()
    records = swap_activations_(model, to="relu", only=(nn.Tanh,))
    assert [r["name"] for r in records] == ["stem_act"]
    assert isinstance(model.enc[0].act, nn.Sigmoid)

    model = NestedNet()
    records = swap_activations_(model, to="relu", only="enc.*")
    assert [r["name"] for r in records] == ["enc.0.act", "enc.1.act"]
    assert isinstance(model.stem_act, nn.Tanh) and isinstance(model.heads["a"][1], nn.Softsign)

    model = NestedNet()
    records = swap_activations_(model, to="relu", only=(nn.Sigmoid, "enc.1.*"))
    assert [r["name"] for r in records] == ["enc.1.act"]


def test_only_type_can_name_a_non_saturating_activation() -> None:
    model = tanh_mlp(act=nn.ReLU)
    records = swap_activations_(model, to="leaky_relu", only=(nn.ReLU,), reinit=False)
    assert len(records) == 3 and all(isinstance(model[i], nn.LeakyReLU) for i in (1, 3, 5))


def test_relu6_is_not_saturating_by_default() -> None:
    assert not is_saturating(nn.ReLU6()) and is_saturating(nn.Hardtanh())
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU6(), nn.Linear(3, 3), nn.Hardtanh())
    records = swap_activations_(model, to="relu")
    assert [r["name"] for r in records] == ["3"]
    assert isinstance(model[1], nn.ReLU6)


def test_only_rejects_non_activation_types() -> None:
    with pytest.raises(TypeError, match="activation module types"):
        swap_activations_(tanh_mlp(), only=(nn.Linear,))


def test_unknown_target_is_rejected() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        swap_activations_(tanh_mlp(), to="swish")


def test_functional_activations_give_a_clear_error() -> None:
    with pytest.raises(ValueError, match="functions in forward"):
        swap_activations_(FunctionalNet())
    with pytest.raises(ValueError, match="no activation modules"):
        swap_activations_(tanh_mlp(), only="nothing.*")


def test_prelu_keeps_float64_and_model_trains() -> None:
    torch.manual_seed(3)
    model = ListNet().double()
    swap_activations_(model, to="prelu")
    prelu = model.layers[1]
    assert isinstance(prelu, nn.PReLU)
    assert prelu.weight.dtype == torch.float64
    assert prelu.weight.device == model.layers[0].weight.device
    assert prelu.weight.item() == pytest.approx(0.25)
    out = model(torch.randn(4, 6, dtype=torch.float64))
    out.sum().backward()
    assert prelu.weight.grad is not None and prelu.weight.grad.dtype == torch.float64


def test_shared_activation_gets_one_shared_replacement() -> None:
    shared = nn.Tanh()
    model = nn.Sequential(nn.Linear(4, 4), shared, nn.Linear(4, 4), shared)
    records = swap_activations_(model, to="prelu")
    assert [r["name"] for r in records] == ["1", "3"]
    assert model[1] is model[3] and isinstance(model[1], nn.PReLU)
    assert len(list(model.parameters())) == 5


@pytest.mark.parametrize(
    ("to", "expected_std"),
    [
        ("relu", lambda fan_in: math.sqrt(2.0 / fan_in)),
        ("elu", lambda fan_in: math.sqrt(2.0 / fan_in)),
        ("gelu", lambda fan_in: math.sqrt(2.0 / fan_in)),
        ("leaky_relu", lambda fan_in: math.sqrt(2.0 / ((1 + 0.01**2) * fan_in))),
        ("prelu", lambda fan_in: math.sqrt(2.0 / ((1 + 0.25**2) * fan_in))),
        ("selu", lambda fan_in: 1.0 / math.sqrt(fan_in)),
    ],
)
def test_reinit_statistics_match_he_and_lecun(to, expected_std) -> None:
    torch.manual_seed(4)
    fan_in = 300
    model = nn.Sequential(nn.Linear(fan_in, 200), nn.Tanh(), nn.Linear(200, 1))
    with torch.no_grad():
        model[0].bias.fill_(3.0)
    last_before = model[2].weight.detach().clone()
    swap_activations_(model, to=to, generator=torch.Generator().manual_seed(0))
    std = sample_std(model[0].weight)
    # 60k draws: the sample std is within ~0.3% of the truth; 3% leaves a wide margin
    assert std == pytest.approx(expected_std(fan_in), rel=0.03)
    mean = sum(model[0].weight.detach().double().flatten().tolist()) / 60000
    assert abs(mean) < 4 * expected_std(fan_in) / math.sqrt(60000)
    assert torch.count_nonzero(model[0].bias) == 0
    assert torch.equal(model[2].weight, last_before)  # the output layer feeds no swapped activation


def test_conv_reinit_uses_channels_times_kernel_as_fan_in() -> None:
    model = nn.Sequential(
        nn.Conv2d(16, 64, kernel_size=5), nn.Sigmoid(), nn.Flatten(), nn.LazyLinear(1)
    )
    swap_activations_(model, to="selu", generator=torch.Generator().manual_seed(1))
    fan_in = 16 * 5 * 5
    assert sample_std(model[0].weight) == pytest.approx(1.0 / math.sqrt(fan_in), rel=0.03)


def test_reinit_steps_over_parameter_free_modules_but_not_other_layers() -> None:
    model = nn.Sequential(nn.Linear(5, 5), nn.Dropout(0.1), nn.BatchNorm1d(5), nn.Tanh())
    records = swap_activations_(model, to="relu")
    assert records[0]["reinitialised_layer"] == "0"

    class Recurrent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(3, 4)
            self.rnn = nn.GRU(4, 4, batch_first=True)
            self.act = nn.Tanh()

    model = Recurrent()
    before = model.proj.weight.detach().clone()
    records = swap_activations_(model, to="relu")
    assert records[0]["reinitialised_layer"] is None
    assert torch.equal(model.proj.weight, before)


def test_reinit_false_keeps_weights_and_generator_is_reproducible() -> None:
    torch.manual_seed(5)
    model = tanh_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    records = swap_activations_(model, to="relu", reinit=False)
    assert all(r["reinitialised_layer"] is None for r in records)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    first, second = tanh_mlp(), tanh_mlp()
    swap_activations_(first, generator=torch.Generator().manual_seed(7))
    swap_activations_(second, generator=torch.Generator().manual_seed(7))
    for i in range(3):
        assert torch.equal(
            first.get_submodule(f"fc{i}").weight, second.get_submodule(f"fc{i}").weight
        )


def first_layer_grad_norm(model: nn.Sequential, x: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    model(x).pow(2).mean().backward()
    return float(model[0].weight.grad.norm())


def test_swap_revives_vanishing_gradients_of_a_deep_sigmoid_net() -> None:
    torch.manual_seed(6)
    model = tanh_mlp(width=32, depth=12, act=nn.Sigmoid)
    x = torch.randn(64, 8)
    before = first_layer_grad_norm(model, x) / float(model[-1].weight.detach().norm())
    swap_activations_(model, to="relu", generator=torch.Generator().manual_seed(0))
    after = first_layer_grad_norm(model, x) / float(model[-1].weight.detach().norm())
    assert after > 1000 * before
