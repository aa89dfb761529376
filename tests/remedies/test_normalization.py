"""Tests for graddoctor.remedies.normalization (insert_batchnorm_)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from graddoctor.remedies.normalization import insert_batchnorm_, norm_for_layer


def seed_mlp(n_features: int = 10, n_layers: int = 5, hidden: int = 100) -> nn.Sequential:
    """The 5 x 100 ReLU MLP of the seed lecture: h1, a1, ..., h5, a5, o."""
    model = nn.Sequential()
    for i in range(1, n_layers + 1):
        model.add_module(f"h{i}", nn.Linear(n_features if i == 1 else hidden, hidden))
        model.add_module(f"a{i}", nn.ReLU())
    model.add_module("o", nn.Linear(hidden, 1))
    return model


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.act = nn.Tanh()
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc(x)))


class SequenceModel(nn.Module):
    """Works on [B, T, F]: BatchNorm1d would normalise over T, LayerNorm over F."""

    def __init__(self, features: int = 5, hidden: int = 16) -> None:
        super().__init__()
        self.proj = nn.Linear(features, hidden)
        self.act = nn.GELU()
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.proj(x)))


def capture_input(module: nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    module.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach()))
    return seen


def naive_mean_var(rows: list[list[float]]) -> tuple[list[float], list[float]]:
    """Per-column mean and population variance with plain loops."""
    n, k = len(rows), len(rows[0])
    means = [sum(r[j] for r in rows) / n for j in range(k)]
    variances = [sum((r[j] - means[j]) ** 2 for r in rows) / n for j in range(k)]
    return means, variances


def test_seed_mlp_before_names_and_order() -> None:
    torch.manual_seed(11)
    model = seed_mlp()
    names = insert_batchnorm_(model)
    assert names == [f"a{i}_bn" for i in range(1, 6)]
    expected = []
    for i in range(1, 6):
        expected += [f"h{i}", f"a{i}_bn", f"a{i}"]
    assert [name for name, _ in model.named_children()] == expected + ["o"]
    assert all(isinstance(model.get_submodule(n), nn.BatchNorm1d) for n in names)
    assert all(model.get_submodule(n).num_features == 100 for n in names)
    assert model.h1.bias is not None  # bias kept


def test_seed_mlp_after_order_and_shapes_in_train_and_eval() -> None:
    torch.manual_seed(11)
    model = seed_mlp()
    x = torch.randn(32, 10)
    names = insert_batchnorm_(model, where="after")
    assert [name for name, _ in model.named_children()][:6] == [
        "h1",
        "a1",
        "a1_bn",
        "h2",
        "a2",
        "a2_bn",
    ]
    assert names == [f"a{i}_bn" for i in range(1, 6)]
    model.train()
    out = model(x)
    out.sum().backward()
    assert out.shape == (32, 1)
    model.eval()
    assert model(x).shape == (32, 1)


def test_before_normalises_the_pre_activations_per_feature() -> None:
    torch.manual_seed(12)
    model = seed_mlp(hidden=6, n_layers=2)
    with torch.no_grad():
        model.h2.weight.mul_(40.0)  # badly scaled layer
    insert_batchnorm_(model)
    seen = capture_input(model.a2)
    model.train()
    model(torch.randn(50, 10))
    means, variances = naive_mean_var(seen[0].tolist())
    assert max(abs(m) for m in means) < 1e-5
    assert all(v == pytest.approx(1.0, rel=1e-3) for v in variances)  # eps=1e-5 -> 1 - 1e-5/var


def test_cnn_gets_batchnorm2d_and_linear_batchnorm1d() -> None:
    torch.manual_seed(13)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 4, 3, padding=1),
        nn.Dropout2d(0.1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
        nn.ReLU(),
        nn.Linear(10, 3),
    )
    x = torch.randn(6, 3, 8, 8)
    out_before = model.eval()(x).shape
    names = insert_batchnorm_(model)
    assert names == ["1_bn", "5_bn", "8_bn"]
    assert (
        isinstance(model.get_submodule("1_bn"), nn.BatchNorm2d)
        and model.get_submodule("1_bn").num_features == 8
    )
    assert (
        isinstance(model.get_submodule("5_bn"), nn.BatchNorm2d)
        and model.get_submodule("5_bn").num_features == 4
    )
    assert (
        isinstance(model.get_submodule("8_bn"), nn.BatchNorm1d)
        and model.get_submodule("8_bn").num_features == 10
    )
    assert isinstance(model[0], nn.Conv2d) and isinstance(
        model[1], nn.BatchNorm2d
    )  # positional indexing
    model.train()
    model(x).sum().backward()
    assert model.eval()(x).shape == out_before


def test_conv1d_and_conv3d_pick_matching_batchnorm() -> None:
    assert isinstance(norm_for_layer(nn.Conv1d(2, 5, 3))[0], nn.BatchNorm1d)
    assert isinstance(norm_for_layer(nn.Conv3d(2, 5, 3))[0], nn.BatchNorm3d)
    group, tag = norm_for_layer(nn.Conv3d(2, 5, 3), kind="layer")
    assert isinstance(group, nn.GroupNorm) and (group.num_groups, group.num_channels, tag) == (
        1,
        5,
        "gn",
    )
    with pytest.raises(TypeError, match="Linear"):
        norm_for_layer(nn.LSTM(3, 3))


def test_custom_module_activation_is_wrapped() -> None:
    torch.manual_seed(14)
    model = Block()
    act = model.act
    names = insert_batchnorm_(model)
    assert names == ["act.bn"]
    assert isinstance(model.act, nn.Sequential)
    assert [n for n, _ in model.act.named_children()] == ["bn", "act"]
    assert model.act.act is act
    assert model(torch.randn(4, 6)).shape == (4, 2)

    model = Block()
    assert insert_batchnorm_(model, where="after") == ["act.bn"]
    assert [n for n, _ in model.act.named_children()] == ["act", "bn"]


def test_modulelist_entries_are_wrapped_and_indexing_still_works() -> None:
    layers = nn.ModuleList([nn.Linear(3, 4), nn.SiLU(), nn.Linear(4, 2)])
    names = insert_batchnorm_(layers)
    assert names == ["1.bn"]
    assert isinstance(layers[1], nn.Sequential) and isinstance(layers[2], nn.Linear)
    x = torch.randn(5, 3)
    for layer in layers:
        x = layer(x)
    assert x.shape == (5, 2)


def test_layer_variant_on_sequence_model_normalises_features() -> None:
    torch.manual_seed(15)
    model = SequenceModel()
    x = torch.randn(3, 7, 5)
    names = insert_batchnorm_(model, kind="layer")
    assert names == ["act.ln"]
    norm = model.get_submodule("act.ln")
    assert isinstance(norm, nn.LayerNorm) and norm.normalized_shape == (16,)
    seen = capture_input(model.act.act)
    out = model(x)
    assert out.shape == (3, 7, 1)
    rows = seen[0].reshape(-1, 16).tolist()
    for row in rows:  # each (b, t) position normalised over its 16 features
        mean = sum(row) / 16
        var = sum((v - mean) ** 2 for v in row) / 16
        assert abs(mean) < 1e-5 and var == pytest.approx(1.0, rel=1e-3)
    model.eval()
    assert model(x).shape == (3, 7, 1)


def test_conv_layer_variant_is_groupnorm_equal_to_layer_norm_over_chw() -> None:
    torch.manual_seed(16)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU())
    names = insert_batchnorm_(model, kind="layer")
    assert names == ["1_gn"]
    x = torch.randn(3, 2, 6, 6)
    pre = model[0](x)
    expected = nn.functional.layer_norm(pre, pre.shape[1:])
    assert torch.allclose(model.get_submodule("1_gn")(pre), expected, atol=1e-5)


def test_float64_model_gets_float64_norms() -> None:
    model = seed_mlp(hidden=8, n_layers=2).double()
    names = insert_batchnorm_(model)
    for name in names:
        norm = model.get_submodule(name)
        assert norm.weight.dtype == torch.float64 and norm.running_mean.dtype == torch.float64
    assert model(torch.randn(4, 10, dtype=torch.float64)).dtype == torch.float64


def test_second_call_inserts_nothing() -> None:
    model = seed_mlp(hidden=8, n_layers=3)
    insert_batchnorm_(model, where="after")
    structure = [(n, type(m)) for n, m in model.named_modules()]
    assert insert_batchnorm_(model, where="after") == []
    assert insert_batchnorm_(model, where="before") == []
    assert [(n, type(m)) for n, m in model.named_modules()] == structure

    wrapped = Block()
    insert_batchnorm_(wrapped)
    assert insert_batchnorm_(wrapped) == []


def test_only_restricts_by_name_and_type() -> None:
    model = seed_mlp(hidden=8)
    assert insert_batchnorm_(model, only=("a1", "a3")) == ["a1_bn", "a3_bn"]
    mixed = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3), nn.ReLU())
    assert insert_batchnorm_(mixed, only=(nn.ReLU,)) == ["3_bn"]


def test_names_do_not_collide_with_existing_children() -> None:
    model = nn.Sequential()
    model.add_module("fc", nn.Linear(3, 3))
    model.add_module("act", nn.ReLU())
    model.add_module("act_bn", nn.Identity())  # taken name, not a norm
    model.add_module("head", nn.Linear(3, 1))
    assert insert_batchnorm_(model) == ["act_bn_1"]


def test_shape_changing_module_between_layer_and_activation_is_skipped() -> None:
    model = nn.Sequential(
        nn.Linear(4, 6),
        nn.Unflatten(1, (2, 3)),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6, 2),
        nn.Dropout(0.2),
        nn.ReLU(),
    )
    assert insert_batchnorm_(model) == ["6_bn"]
    assert model.get_submodule("6_bn").num_features == 2


def test_nothing_to_insert_is_an_error() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.fc(x))

    with pytest.raises(ValueError, match="no activation module"):
        insert_batchnorm_(Functional())
    with pytest.raises(ValueError, match="where must be"):
        insert_batchnorm_(seed_mlp(), where="inside")
    with pytest.raises(ValueError, match="kind must be"):
        insert_batchnorm_(seed_mlp(), kind="instance")


def test_batchnorm_tames_a_badly_scaled_deep_net() -> None:
    torch.manual_seed(17)
    model = seed_mlp(hidden=32, n_layers=8)
    with torch.no_grad():
        for module in model:
            if isinstance(module, nn.Linear):
                module.weight.mul_(10.0)  # gain far above He: activations explode
    x = torch.randn(64, 10)
    before = float(model(x).detach().abs().max())
    insert_batchnorm_(model)
    after = float(model(x).detach().abs().max())
    assert before > 1e4 and after < before / 100
    assert math.isfinite(after)
