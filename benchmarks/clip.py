"""Speed of graddoctor's clip_grad_norm_ against torch.nn.utils.clip_grad_norm_.

For 10, 100 and 1000 gradient tensors (weight matrices, conv kernels and biases, about
``--elements`` entries in all) the two are timed interleaved in one loop, alternating
which goes first, and the medians compared. ``ours`` is graddoctor's ``clip_grad_norm_``
with torch's defaults (no finiteness check, no host sync); ``ours/raise`` passes
``nonfinite="raise"``, which adds one finiteness check (a host sync on GPU).

    python benchmarks/clip.py [--repeats 200] [--elements 4000000] [--device cpu] [--threads 1]

On CPU the default is one intra-op thread: on a shared machine a second OpenMP thread
that gets descheduled makes large in-place multiplies up to 100x slower for both sides,
which drowns the comparison in noise.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from graddoctor.clip import clip_grad_norm_


def make_params(count: int, elements: int, device: str, seed: int = 0) -> list[nn.Parameter]:
    """``count`` parameters with gradients: a realistic mix of matrices, kernels and biases."""
    g = torch.Generator().manual_seed(seed)
    per_weight = elements // max(1, count // 2)
    shapes: list[tuple[int, ...]] = []
    while len(shapes) < count:
        kind = len(shapes) // 2 % 3
        if kind == 2 and per_weight >= 9 * 4:  # a 3x3 conv kernel and its bias
            channels = max(2, int((per_weight / 9) ** 0.5))
            shapes += [(channels, channels, 3, 3), (channels,)]
        else:  # a linear weight (square or 4:1) and its bias
            ratio = 4 if kind == 1 else 1
            rows = max(1, int((per_weight * ratio) ** 0.5))
            shapes += [(rows, max(1, per_weight // rows)), (rows,)]
    params = []
    for shape in shapes[:count]:
        p = nn.Parameter(torch.empty(shape, device=device))
        p.grad = torch.randn(shape, generator=g).to(device)
        params.append(p)
    return params


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_interleaved(functions: dict, repeats: int, device: str) -> dict[str, float]:
    """Median seconds per call of each function, called in rotating order every repeat."""
    names = list(functions)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up
        functions[name]()
    sync(device)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            sync(device)
            start = time.perf_counter()
            functions[name]()
            sync(device)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--elements", type=int, default=4_000_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op CPU threads (0: torch's default)"
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
        f"repeats {args.repeats}, ~{args.elements:,} elements"
    )
    header = (
        f"{'tensors':>8} {'elements':>10} {'torch (ms)':>11} {'ours (ms)':>10} {'ours/torch':>11} "
        f"{'ours/raise (ms)':>16} {'raise/torch':>12}"
    )
    print(header)
    print("-" * len(header))
    for count in (10, 100, 1000):
        params = make_params(count, args.elements, args.device)
        n_elements = sum(p.numel() for p in params)
        medians = time_interleaved(
            {
                "torch": lambda params=params: nn.utils.clip_grad_norm_(params, 1.0),
                "ours": lambda params=params: clip_grad_norm_(params, 1.0),
                "ours_raise": lambda params=params: clip_grad_norm_(params, 1.0, nonfinite="raise"),
            },
            args.repeats,
            args.device,
        )
        torch_ms, ours_ms, raise_ms = (1e3 * medians[k] for k in ("torch", "ours", "ours_raise"))
        print(
            f"{count:>8} {n_elements:>10,} {torch_ms:>11.3f} {ours_ms:>10.3f} {ours_ms / torch_ms:>11.3f} "
            f"{raise_ms:>16.3f} {raise_ms / torch_ms:>12.3f}"
        )


if __name__ == "__main__":
    main()
