"""Real architectures for the diagnosis suite, built from code or ``transformers`` configs.

Nothing is downloaded: a tiny GPT-2 and a tiny BERT come from their configs, a
nanoGPT-style decoder is written here, and the data are sequences drawn from a random
Markov chain (learnable: every token has a few likely successors).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from graddoctor import Problem

VOCAB = 32
LENGTH = 16
BATCH = 16


def markov_batches(count: int = 8, seed: int = 0, vocab: int = VOCAB, length: int = LENGTH):
    """``count`` batches of ``(tokens[B, T], next_tokens[B, T])`` from a sparse Markov chain."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.full((vocab, vocab), -4.0)
    for token in range(vocab):
        logits[token, torch.randperm(vocab, generator=g)[:3]] = 2.0
    transition = torch.softmax(logits, dim=1)
    batches = []
    for _ in range(count):
        seq = torch.empty(BATCH, length + 1, dtype=torch.long)
        seq[:, 0] = torch.randint(0, vocab, (BATCH,), generator=g)
        for t in range(length):
            seq[:, t + 1] = torch.multinomial(transition[seq[:, t]], 1, generator=g)[:, 0]
        batches.append((seq[:, :-1].clone(), seq[:, 1:].clone()))
    return batches


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


class LogitsOnly(nn.Module):
    """A Hugging Face model whose forward returns ``.logits`` (the loss is computed outside)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits


def gpt2_tiny(lr: float = 1e-3, seed: int = 0) -> Problem:
    """``GPT2LMHeadModel`` from ``GPT2Config`` (2 layers, 32 wide, no dropout), AdamW."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=LENGTH,
        n_embd=32,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = LogitsOnly(GPT2LMHeadModel(config))
    return Problem(
        model,
        markov_batches(),
        next_token_loss,
        optimizer=lambda p: torch.optim.AdamW(p, lr=lr),
        name=f"gpt2-tiny-lr{lr:g}",
    )


class BertClassifier(nn.Module):
    """``BertForSequenceClassification`` returning logits."""

    def __init__(self, labels: int = 4) -> None:
        super().__init__()
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig(
            vocab_size=VOCAB,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            max_position_embeddings=LENGTH,
            num_labels=labels,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.bert = BertForSequenceClassification(config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids).logits


def bert_batches(count: int = 8, seed: int = 1, labels: int = 4):
    """Classify a token sequence by which quarter of the vocabulary its most frequent token is in."""
    out = []
    for tokens, _ in markov_batches(count, seed):
        out.append((tokens, tokens.mode(dim=1).values * labels // VOCAB))
    return out


def bert_tiny(seed: int = 0) -> Problem:
    """The issue's tiny BERT classifier: 2 layers, hidden 64, AdamW 1e-3; it trains normally."""
    torch.manual_seed(seed)
    return Problem(
        BertClassifier(),
        bert_batches(),
        nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
        name="bert-tiny",
    )


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """nanoGPT's pre-LayerNorm block: x + attn(ln(x)), x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            OrderedDict(
                c_fc=nn.Linear(dim, 4 * dim), gelu=nn.GELU(), c_proj=nn.Linear(4 * dim, dim)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """A nanoGPT-style decoder (token + position embeddings, pre-LN blocks, tied head)."""

    def __init__(self, layers: int = 2, dim: int = 32, heads: int = 2) -> None:
        super().__init__()
        self.wte = nn.Embedding(VOCAB, dim)
        self.wpe = nn.Embedding(LENGTH, dim)
        self.h = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():  # nanoGPT's init
            if p.dim() == 2:
                nn.init.normal_(
                    p, std=0.02 / math.sqrt(2 * layers) if name.endswith("c_proj.weight") else 0.02
                )
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1]))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def nanogpt(lr: float = 1e-3, seed: int = 0, clip: float | None = None) -> Problem:
    """The nanoGPT-style decoder on Markov sequences, AdamW at ``lr`` (optionally clipped)."""
    torch.manual_seed(seed)
    transforms = ()
    if clip is not None:
        transforms = (lambda model, optimizer: nn.utils.clip_grad_norm_(model.parameters(), clip),)
    return Problem(
        NanoGPT(),
        markov_batches(),
        next_token_loss,
        grad_transforms=transforms,
        optimizer=lambda p: torch.optim.AdamW(p, lr=lr),
        name=f"nanogpt-lr{lr:g}",
    )


def tanh20(seed: int = 0) -> Problem:
    """The issue's 20-layer tanh MLP with N(0, 1) weights: saturated, not vanishing forward."""
    torch.manual_seed(seed)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    widths = [20] + [64] * 20 + [4]
    for i in range(len(widths) - 1):
        linear = nn.Linear(widths[i], widths[i + 1])
        nn.init.normal_(linear.weight, std=1.0)
        nn.init.zeros_(linear.bias)
        layers[f"fc{i + 1}"] = linear
        if i < len(widths) - 2:
            layers[f"act{i + 1}"] = nn.Tanh()
    g = torch.Generator().manual_seed(seed)
    centers = 2 * torch.randn(4, 20, generator=g)
    data = []
    for _ in range(4):
        y = torch.randint(0, 4, (64,), generator=g)
        data.append((centers[y] + torch.randn(64, 20, generator=g), y))
    return Problem(nn.Sequential(layers), data, nn.CrossEntropyLoss(), name="tanh20-normal")


ARCHITECTURES = {
    "gpt2-tiny": gpt2_tiny,
    "gpt2-tiny-lr-too-high": lambda: gpt2_tiny(lr=1.0),
    "nanogpt-tiny": nanogpt,
    "nanogpt-tiny-clipped": lambda: nanogpt(clip=1.0),
    "bert-tiny": bert_tiny,
    "tanh20-normal": tanh20,
}
