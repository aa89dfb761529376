"""A nanoGPT-style model and data for the Guard's tests: a pre-LayerNorm causal Transformer, AdamW."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

VOCAB, CONTEXT = 16, 16


class TinyGPT(nn.Module):
    """Token and position embeddings, causal pre-LN Transformer blocks, a LayerNorm and a linear head."""

    def __init__(self, width: int = 32, heads: int = 2, layers: int = 2) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, width)
        self.positions = nn.Embedding(CONTEXT, width)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        length = idx.shape[1]
        x = self.tokens(idx) + self.positions(torch.arange(length))
        mask = nn.Transformer.generate_square_subsequent_mask(length)
        for block in self.blocks:
            x = block(x, src_mask=mask, is_causal=True)
        return self.head(self.norm(x))


def markov_batches(
    steps: int, batch: int = 16, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Sequences from a fixed random Markov chain (its entropy is the floor of the loss)."""
    g = torch.Generator().manual_seed(seed)
    transitions = torch.softmax(3 * torch.randn(VOCAB, VOCAB, generator=g), dim=1)
    out = []
    for _ in range(steps):
        seq = [torch.randint(0, VOCAB, (batch,), generator=g)]
        for _ in range(CONTEXT):
            seq.append(torch.multinomial(transitions[seq[-1]], 1, generator=g).squeeze(1))
        tokens = torch.stack(seq, dim=1)
        out.append((tokens[:, :-1], tokens[:, 1:]))
    return out


def gpt_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())
