"""Naive ground truth for the real-architecture problems of the diagnosis suite.

Each function trains or differentiates the problem with plain PyTorch (no graddoctor
code) and asserts what its label claims, independently of the detectors.
"""

from __future__ import annotations

import copy
import math
import statistics

import torch
from torch import nn


def naive_losses(problem, steps: int = 30) -> list[float]:
    """A plain training loop on a copy: zero_grad, forward, loss, backward, step."""
    model = copy.deepcopy(problem.model)
    optimizer = problem.make_optimizer(model)
    losses = []
    for _, (x, y) in zip(range(steps), problem.batches()):
        optimizer.zero_grad()
        loss = problem.loss_fn(model(x), y)
        loss.backward()
        for transform in problem.grad_transforms:
            transform(model, optimizer)
        optimizer.step()
        losses.append(loss.item())
    return losses


def trains(problem) -> None:
    """Healthy: finite losses, the last five below the first loss, never far above it."""
    losses = naive_losses(problem)
    assert all(math.isfinite(v) for v in losses)
    assert statistics.mean(losses[-5:]) < 0.97 * losses[0], losses
    assert max(losses) < 1.25 * losses[0], losses


def diverges(problem) -> None:
    """Diverging: the median loss over steps 1-10 is more than 1.5 times the first."""
    losses = naive_losses(problem)
    assert statistics.median(losses[1:11]) > 1.5 * losses[0], losses


def output_gradients(model: nn.Module, names: list[str], x, y, loss_fn) -> dict[str, float]:
    """||dL/d output|| of the named modules on one batch (forward hooks retaining grads)."""
    outputs = {}
    modules = dict(model.named_modules())
    handles = [
        modules[n].register_forward_hook(
            lambda m, i, o, n=n: outputs.__setitem__(n, o) or o.retain_grad()
        )
        for n in names
    ]
    loss_fn(model(x), y).backward()
    for handle in handles:
        handle.remove()
    return {n: float(outputs[n].grad.norm()) for n in names}


def bert_trains_with_small_query_gradients(problem) -> None:
    """The issue's BERT: trains; query/key receive tiny gradients at init (every Transformer
    does), while the word embeddings get as much gradient as the classifier."""
    trains(problem)
    model = copy.deepcopy(problem.model)
    x, y = problem.data[0]
    prefix = "bert.bert.encoder.layer.0."
    names = [prefix + "attention.self.query", prefix + "output.dense", "bert.classifier"]
    grads = output_gradients(model, names, x, y, problem.loss_fn)
    assert grads[names[0]] / grads["bert.classifier"] < 1e-3  # what fooled the old detector
    assert grads[names[1]] / grads["bert.classifier"] > 1e-3  # the residual stream is fine
    embedding = model.bert.bert.embeddings.word_embeddings.weight.grad.norm()
    classifier = model.bert.classifier.weight.grad.norm()
    assert 0.1 < float(embedding / classifier) < 10


def tanh20_saturated_and_exploding(problem) -> None:
    """20 tanh layers with N(0, 1) weights: outputs pinned at +-1, the gradient reaching the
    first layer 1e3 times the last one's at init, and no forward shrinking between layers."""
    model = copy.deepcopy(problem.model)
    x, y = problem.data[0]
    linears = [n for n, m in model.named_children() if isinstance(m, nn.Linear)]
    grads = output_gradients(model, linears, x, y, problem.loss_fn)
    assert grads[linears[0]] / grads[linears[-1]] > 1e3
    h, saturated, stds = x, [], []
    with torch.no_grad():
        for _, child in model.named_children():
            h = child(h)
            if isinstance(child, nn.Tanh):
                saturated.append(float((h.abs() >= 0.99).float().mean()))
                stds.append(float(h.std()))
    assert min(saturated) > 0.5
    assert 1e-3 < stds[-1] / stds[0] < 1e3


TRUTHS = {
    "gpt2-tiny": trains,
    "gpt2-tiny-lr-too-high": diverges,
    "nanogpt-tiny": trains,
    "nanogpt-tiny-clipped": trains,
    "bert-tiny": bert_trains_with_small_query_gradients,
    "tanh20-normal": tanh20_saturated_and_exploding,
}
