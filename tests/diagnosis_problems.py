"""The labelled problems of the diagnosis suite: each builds a Problem on local data.

The truth of each label is measured inside tests/diagnosis/test_diagnosis_suite.py by a naive
computation written there, independently of the detectors.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from graddoctor import Problem
from graddoctor.scenarios.regression import exploding_regression

from .architectures import ARCHITECTURES


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def regression_batches(features=10, batch=32, count=4, seed=0, scale=1.0):
    g = _gen(seed)
    w = torch.randn(features, 1, generator=g)
    out = []
    for _ in range(count):
        x = torch.randn(batch, features, generator=g)
        out.append((x, scale * (x @ w) / math.sqrt(features) + 0.1 * torch.randn(batch, 1, generator=g)))
    return out


def classification_batches(features=20, classes=4, batch=64, count=4, seed=0):
    g = _gen(seed)
    centers = 2 * torch.randn(classes, features, generator=g)
    out = []
    for _ in range(count):
        y = torch.randint(0, classes, (batch,), generator=g)
        out.append((centers[y] + torch.randn(batch, features, generator=g), y))
    return out


def mlp(widths, activation, init=None, bias_init=None, batchnorm=False, seed=0):
    torch.manual_seed(seed)
    layers = OrderedDict()
    for i in range(len(widths) - 1):
        linear = nn.Linear(widths[i], widths[i + 1])
        if init is not None:
            init(linear.weight)
            nn.init.zeros_(linear.bias)
        layers[f"fc{i + 1}"] = linear
        if i < len(widths) - 2:
            if batchnorm:
                layers[f"bn{i + 1}"] = nn.BatchNorm1d(widths[i + 1])
            layers[f"act{i + 1}"] = activation()
    return nn.Sequential(layers)


def relu5(batchnorm: bool) -> Problem:
    """Godoy's 5 x 100 ReLU MLP with a poor init (normal std 0.01), with and without BN."""
    model = mlp([10] + [100] * 5 + [1], nn.ReLU, init=lambda w: nn.init.normal_(w, std=0.01), batchnorm=batchnorm)
    return Problem(model, regression_batches(), nn.MSELoss(), name=f"relu5{'-bn' if batchnorm else ''}")


def sigmoid_standard() -> Problem:
    """Glorot & Bengio's deep sigmoid MLP with the standard init U[-1/sqrt(n), 1/sqrt(n)]."""
    def standard(w):
        bound = 1 / math.sqrt(w.shape[1])
        nn.init.uniform_(w, -bound, bound)

    model = mlp([20] + [64] * 8 + [4], nn.Sigmoid, init=standard)
    return Problem(model, classification_batches(), nn.CrossEntropyLoss(), name="sigmoid-standard")


def sigmoid_large() -> Problem:
    """A sigmoid MLP with N(0, 1) weights: pre-activations ~ sqrt(n), outputs pinned at 0/1."""
    model = mlp([20] + [64] * 4 + [4], nn.Sigmoid, init=lambda w: nn.init.normal_(w, std=1.0))
    return Problem(model, classification_batches(), nn.CrossEntropyLoss(), name="sigmoid-large-init")


def relu30(init: str) -> Problem:
    """He et al. 2015's 30-layer ReLU MLP: Xavier init vs He init."""
    scheme = nn.init.xavier_normal_ if init == "xavier" else (lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))
    model = mlp([20] + [64] * 30 + [4], nn.ReLU, init=scheme)
    return Problem(model, classification_batches(), nn.CrossEntropyLoss(), name=f"relu30-{init}")


def deep_linear(scale: float, depth: int = 20, width: int = 16) -> Problem:
    """The lecture slides' deep linear network with weight matrices scaled orthogonal * w."""
    torch.manual_seed(0)
    layers = OrderedDict()
    for i in range(depth):
        linear = nn.Linear(width, width, bias=False)
        nn.init.orthogonal_(linear.weight, gain=scale)
        layers[f"layer_{i + 1}"] = linear
    layers["out"] = nn.Linear(width, 1)
    return Problem(nn.Sequential(layers), regression_batches(features=width), nn.MSELoss(), name=f"linear-w{scale}")


class RNNRegressor(nn.Module):
    def __init__(self, nonlinearity: str, radius: float, hidden: int = 32, features: int = 3) -> None:
        super().__init__()
        self.rnn = nn.RNN(features, hidden, nonlinearity=nonlinearity, batch_first=True)
        with torch.no_grad():
            w = torch.empty(hidden, hidden)
            nn.init.orthogonal_(w)
            self.rnn.weight_hh_l0.copy_(radius * w)  # orthogonal: every |eigenvalue| = radius
            self.rnn.bias_hh_l0.zero_()
            self.rnn.bias_ih_l0.zero_()
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def sequence_batches(length=40, features=3, batch=16, count=4, seed=0):
    """The target depends on the first time step only: a long-range dependency (Pascanu et al. 2013)."""
    g = _gen(seed)
    out = []
    for _ in range(count):
        x = torch.randn(batch, length, features, generator=g) * 0.5
        out.append((x, x[:, 0, :1].clone()))
    return out


def rnn(nonlinearity: str, radius: float) -> Problem:
    torch.manual_seed(0)
    return Problem(RNNRegressor(nonlinearity, radius), sequence_batches(), nn.MSELoss(),
                   name=f"{nonlinearity}-rnn-radius{radius}")


def dead_relu() -> Problem:
    model = mlp([10, 64, 64, 64, 1], nn.ReLU, init=lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))
    with torch.no_grad():
        model.fc2.bias.fill_(-50.0)  # layer 2 never fires
    return Problem(model, regression_batches(), nn.MSELoss(), name="dead-relu")


class LogLayer(nn.Module):
    """log(x): NaN in the forward pass for negative inputs."""

    def forward(self, x):
        return torch.log(x)


class SqrtWhere(nn.Module):
    """torch.where(x > 0, sqrt(x), 0): finite forward, NaN backward (the silent case)."""

    def forward(self, x):
        return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))


def forward_nan() -> Problem:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict([("fc1", nn.Linear(10, 16)), ("act", nn.Tanh()), ("log", LogLayer()),
                                       ("fc2", nn.Linear(16, 1))]))
    return Problem(model, regression_batches(), nn.MSELoss(), name="forward-nan")


def backward_nan() -> Problem:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict([("fc1", nn.Linear(10, 16)), ("sqrt", SqrtWhere()), ("fc2", nn.Linear(16, 1))]))
    return Problem(model, regression_batches(), nn.MSELoss(), name="backward-nan")


def cnn_bn() -> Problem:
    torch.manual_seed(0)
    g = _gen(1)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
    )
    data = [(torch.randn(16, 3, 12, 12, generator=g), torch.randint(0, 4, (16,), generator=g)) for _ in range(4)]
    return Problem(model, data, nn.CrossEntropyLoss(), name="cnn-bn")


class PreLNTransformer(nn.Module):
    def __init__(self, dim: int = 32, layers: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        block = nn.TransformerEncoderLayer(dim, 4, 64, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 1)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(1))


def transformer() -> Problem:
    torch.manual_seed(0)
    g = _gen(2)
    data = []
    for _ in range(4):
        x = torch.randn(8, 10, 8, generator=g)
        data.append((x, x.mean(dim=(1, 2)).unsqueeze(1)))
    return Problem(PreLNTransformer(), data, nn.MSELoss(), name="pre-ln-transformer")


class LSTMShort(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 16, batch_first=True)
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        return self.head(self.lstm(x)[0][:, -1])


def lstm_short() -> Problem:
    torch.manual_seed(0)
    g = _gen(3)
    data = []
    for _ in range(4):
        x = torch.randn(16, 6, 3, generator=g)
        data.append((x, x[:, -2:, 0].sum(1, keepdim=True)))
    return Problem(LSTMShort(), data, nn.MSELoss(), name="lstm-short")


def selu_lecun() -> Problem:
    model = mlp([20] + [64] * 16 + [4], nn.SELU, init=lambda w: nn.init.normal_(w, std=1 / math.sqrt(w.shape[1])))
    return Problem(model, classification_batches(), nn.CrossEntropyLoss(), name="selu-lecun")


def he_mlp() -> Problem:
    model = mlp([10, 128, 128, 128, 128, 1], nn.ReLU, init=lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))
    return Problem(model, regression_batches(), nn.MSELoss(), name="he-relu-mlp")


PROBLEMS = {
    "exploding-regression": exploding_regression,
    "relu5": lambda: relu5(False),
    "relu5-bn": lambda: relu5(True),
    "sigmoid-standard": sigmoid_standard,
    "sigmoid-large-init": sigmoid_large,
    "relu30-xavier": lambda: relu30("xavier"),
    "relu30-he": lambda: relu30("he"),
    "linear-w0.5": lambda: deep_linear(0.5),
    "linear-w1.5": lambda: deep_linear(1.5),
    "tanh-rnn-0.5": lambda: rnn("tanh", 0.5),
    "tanh-rnn-3": lambda: rnn("tanh", 3.0),
    "relu-rnn-0.5": lambda: rnn("relu", 0.5),
    "relu-rnn-3": lambda: rnn("relu", 3.0),
    "dead-relu": dead_relu,
    "forward-nan": forward_nan,
    "backward-nan": backward_nan,
    "cnn-bn": cnn_bn,
    "pre-ln-transformer": transformer,
    "lstm-short": lstm_short,
    "selu-lecun": selu_lecun,
    "he-relu-mlp": he_mlp,
    **ARCHITECTURES,  # real architectures: tiny GPT-2, nanoGPT-style, BERT; a deep tanh MLP
}
