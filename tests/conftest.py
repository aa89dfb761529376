"""Test-wide settings."""

import torch

# The models under test are small: one thread avoids OpenMP contention on the 2-core
# CI machine (and between test processes), which made tiny ops 10-60x slower.
torch.set_num_threads(1)
