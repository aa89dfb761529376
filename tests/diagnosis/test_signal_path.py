"""Depth detectors follow the signal path: block exits of a residual stream, no query/key,
forward scales compared like with like."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.diagnosis.signal_path import (
    block_of,
    forward_paths,
    input_is_bounded,
    is_query_or_key,
    signal_path,
)
from graddoctor.views import load_view

from ..architectures import bert_tiny, nanogpt, tanh20

BERT_LAYERS = [
    f"bert.encoder.layer.{i}.{part}"
    for i in range(2)
    for part in ("attention.self.query", "attention.self.key", "attention.self.value",
                 "attention.output.dense", "intermediate.dense", "output.dense")
] + ["bert.pooler.dense", "classifier"]  # fmt: skip


@pytest.mark.parametrize(
    "name, block",
    [
        ("bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0"),
        ("transformer.h.1.mlp.c_fc", "transformer.h.1"),
        ("blocks.2.attn", "blocks.2"),
        ("layer1.0.conv2", "layer1.0"),
        ("fc3", "fc3"),
        ("0", "0"),
        ("features.3", "features.3"),
    ],
)
def test_block_of(name, block):
    assert block_of(name) == block


def test_query_and_key_projections_by_name():
    for name in (
        "layer.0.attention.self.query",
        "h.0.attn.k_proj",
        "blocks.1.attn.to_q",
        "layers.0.wq",
    ):
        assert is_query_or_key(name)
    for name in ("layer.0.attention.self.value", "h.0.attn.c_attn", "key_encoder", "classifier"):
        assert not is_query_or_key(name)


def test_signal_path_keeps_one_exit_per_block_and_plain_layers_as_they_are():
    assert signal_path(BERT_LAYERS) == [
        "bert.encoder.layer.0.output.dense",
        "bert.encoder.layer.1.output.dense",
        "bert.pooler.dense",
        "classifier",
    ]
    plain = [f"fc{i}" for i in range(1, 8)]
    assert signal_path(plain) == plain
    sequential = ["0", "2", "4"]
    assert signal_path(sequential) == sequential


def checked_view(problem, path, steps=3):
    gd.checkup(problem, steps=steps, run_path=path)
    return load_view(gd.open_run(path))


def test_forward_comparisons_skip_bounded_and_normalised_inputs(tmp_path):
    view = checked_view(tanh20(), tmp_path / "tanh.gdr")
    unbounded, saturating = forward_paths(view, view.weight_layers())
    assert unbounded == ["fc1"]  # every later Linear reads a tanh output in [-1, 1]
    assert saturating == [f"act{i}" for i in range(1, 21)]
    assert input_is_bounded(view, "fc2") and not input_is_bounded(view, "fc1")

    view = checked_view(nanogpt(), tmp_path / "gpt.gdr")
    unbounded, *_ = forward_paths(view, view.weight_layers())
    assert unbounded == ["h.0.mlp.c_proj", "h.1.mlp.c_proj"]
    assert input_is_bounded(view, "lm_head")  # after the final LayerNorm


def test_tiny_bert_training_normally_is_healthy_and_the_path_is_its_blocks(tmp_path):
    diagnosis = gd.checkup(bert_tiny(), run_path=tmp_path / "bert.gdr")
    assert diagnosis.healthy, diagnosis.to_json()
    view = load_view(gd.open_run(tmp_path / "bert.gdr"))
    path = signal_path(view.weight_layers())
    assert path[0] == "bert.bert.encoder.layer.0.output.dense" and path[-1] == "bert.classifier"
    assert not any(is_query_or_key(name) for name in path)


def test_deep_tanh_with_unit_weights_is_saturated_not_vanishing_forward(tmp_path):
    diagnosis = gd.checkup(tanh20(), run_path=tmp_path / "tanh.gdr")
    assert "saturated_activations" in diagnosis.kinds()
    assert "vanishing_activations" not in diagnosis.kinds()


def test_deep_linear_and_relu_nets_still_vanish_forward(tmp_path):
    torch.manual_seed(0)
    layers = []
    for _ in range(10):
        linear = nn.Linear(16, 16)
        nn.init.normal_(linear.weight, std=0.05)
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(16, 1))
    data = [(torch.randn(32, 16), torch.randn(32, 1)) for _ in range(2)]
    diagnosis = gd.checkup(model, data, nn.MSELoss(), steps=6, run_path=tmp_path / "relu.gdr")
    finding = diagnosis.of_kind("vanishing_activations")[0]
    assert finding.layers == ["0", "18"] and finding.evidence["compared"].startswith(
        "weight layers"
    )
