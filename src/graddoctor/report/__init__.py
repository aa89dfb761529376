"""Figures and reports drawn from a recorded run (the store), never from live hooks.

Importing ``graddoctor.report`` imports matplotlib; ``import graddoctor`` does not.
"""

from .figures import (
    FIGURES,
    activations,
    figure_to_data_uri,
    grad_vs_depth,
    gradient_flow,
    linear_theory,
    loss,
    saturation,
    save_figure,
    time_gradients,
    weights,
)

__all__ = [
    "FIGURES",
    "activations",
    "figure_to_data_uri",
    "grad_vs_depth",
    "gradient_flow",
    "linear_theory",
    "loss",
    "save_figure",
    "saturation",
    "time_gradients",
    "weights",
]
