"""Small real models of each family, with a batch of data for each (shared by tests)."""

from __future__ import annotations

import torch
from torch import nn


class LSTMRegressor(nn.Module):
    def __init__(self, features: int = 5, hidden: int = 12) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class TransformerRegressor(nn.Module):
    def __init__(self, features: int = 16) -> None:
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(features, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(features, 1)

    def forward(self, x):
        return self.head(self.encoder(x).mean(dim=1))


class TiedLM(nn.Module):
    """Embedding and output projection share one weight."""

    def __init__(self, vocab: int = 20, dim: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.act = nn.Tanh()
        self.out = nn.Linear(dim, vocab, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, tokens):
        return self.out(self.act(self.mix(self.embed(tokens))))


class DictOutput(nn.Module):
    """A module returning a dict, as Hugging Face models do."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        return {"hidden": torch.relu(self.fc(x)), "aux": x.sum()}


class DictModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = DictOutput()
        self.head = nn.Linear(6, 1)

    def forward(self, x):
        return self.head(self.block(x)["hidden"])


def mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor, nn.Module]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())
    return model, torch.randn(32, 8), torch.rand(32, 1), nn.MSELoss()


def cnn_bn():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU6(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4),
    )
    return model, torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,)), nn.CrossEntropyLoss()


def lstm():
    torch.manual_seed(2)
    return LSTMRegressor(), torch.randn(8, 7, 5), torch.randn(8, 1), nn.MSELoss()


def transformer():
    torch.manual_seed(3)
    return TransformerRegressor(), torch.randn(4, 6, 16), torch.randn(4, 1), nn.MSELoss()


def tied():
    torch.manual_seed(4)
    tokens = torch.randint(0, 20, (6, 5))
    model = TiedLM()
    return model, tokens, torch.randint(0, 20, (6, 5)), lambda out, t: nn.functional.cross_entropy(out.reshape(-1, 20), t.reshape(-1))


def frozen():
    model, x, y, loss = mlp()
    for p in model[0].parameters():
        p.requires_grad_(False)
    return model, x, y, loss


def dict_model():
    torch.manual_seed(5)
    return DictModel(), torch.randn(10, 6), torch.randn(10, 1), nn.MSELoss()


FAMILIES = {"mlp": mlp, "cnn_bn": cnn_bn, "lstm": lstm, "transformer": transformer, "tied": tied,
            "frozen": frozen, "dict": dict_model}
