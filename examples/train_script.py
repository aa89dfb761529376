"""A plain PyTorch training script: an MLP regressor on synthetic data.

It knows nothing about graddoctor. Run it as is, or under the zero-code monitor::

    python examples/train_script.py --steps 200
    graddoctor run examples/train_script.py -- --steps 200
    graddoctor run examples/train_script.py -- --diverge            # ends in NaN
    graddoctor run examples/train_script.py -- --diverge --stop-on-nan  # crashes on NaN

``--diverge`` trains on unstandardised targets (standard deviation ~300) and
lr 10, the classic way a regression's gradients explode to Inf and NaN.
"""

import argparse
import math

import torch
from torch import nn


class Regressor(nn.Module):
    def __init__(self, in_features=10, hidden=32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.head(self.body(x))


def make_data(samples, target_scale, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 10, generator=generator)
    true_weights = torch.randn(10, 1, generator=generator)
    y = target_scale * (x @ true_weights) + 0.1 * torch.randn(samples, 1, generator=generator)
    return x, y


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--diverge", action="store_true", help="targets x100 and lr 10: ends in NaN")
    parser.add_argument("--stop-on-nan", action="store_true", help="raise when the loss is not finite")
    parser.add_argument("--print-every", type=int, default=10)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    target_scale, lr = (100.0, 10.0) if args.diverge else (1.0, args.lr)
    x, y = make_data(1024, target_scale, args.seed)
    model = Regressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.MSELoss()
    for step in range(args.steps):
        start = (step * args.batch_size) % len(x)
        inputs, targets = x[start : start + args.batch_size], y[start : start + args.batch_size]
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), targets)
        if args.stop_on_nan and not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}")
        loss.backward()
        optimizer.step()
        if step % args.print_every == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4g}")


if __name__ == "__main__":
    main()
