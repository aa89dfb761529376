"""The recurrent family's registered remedies: TBPTT, penalties, Omega, leaky units, gating, echo state.

Their code is in :mod:`graddoctor.remedies.recurrent._apply`.

=====================  ==============================================================
id                     what it does, defaults
=====================  ==============================================================
tbptt                  ``step_fn = tbptt(k=10)``
recurrent_penalty      ``recurrent_penalty(kind="spectral", strength=1e-2, bound=1.0)``
vanishing_regularizer  one-layer ``nn.RNN`` -> ``ElmanRNN`` (same weights and function),
                       ``step_fn = omega_step(strength=1.0)``
leaky_units            one-layer ``nn.RNN`` / ``ElmanRNN`` -> ``LeakyRNN`` with the same
                       weights, ``leak_range=(0.02, 0.2), seed=0``
lstm, gru              ``swap_rnn_(to=..., forget_bias=3.0)``, freshly initialised gated
                       layers whose forget (GRU: update) gate starts at bias 3, ``seed=0``
echo_state             ``EchoStateNetwork(reservoir_size=None (the core's hidden size),
                       spectral_radius=0.95, ridge=1e-6, seed=0)`` and a ridge-fit step_fn
=====================  ==============================================================
"""

from __future__ import annotations

from graddoctor.remedies._deferred import Deferred
from graddoctor.remedies._remedy import Remedy

# the gated swaps start the forget gate (the GRU's update gate) at bias 3: a memory time
# constant of 1 + e^3 = 21 steps instead of PyTorch's 2 (see recurrent.set_forget_bias_)
FORGET_BIAS = 3.0


def _code(name: str, *args: str) -> Deferred:
    return Deferred("graddoctor.remedies.recurrent._apply", name, *args)


VANISHING_REGULARIZER = Remedy(
    "vanishing_regularizer", "Omega regulariser keeping error-signal norms through time (Pascanu et al. 2013)",
    {"strength": 1.0}, _code("_omega"), _code("_omega_check"), replaces_step=True,
    treats={"vanishing_gradients_over_time": 5},
)  # fmt: skip

REMEDIES = (
    Remedy(
        "tbptt", "Truncated backpropagation through time (Williams & Peng 1990)",
        {"k": 10}, _code("_tbptt"), _code("_tbptt_check"), replaces_step=True,
        treats={"exploding_gradients_over_time": 5},
    ),
    Remedy(
        "recurrent_penalty", "Penalise recurrent spectral norms above a bound (Pascanu, Mikolov & Bengio 2013)",
        {"kind": "spectral", "strength": 1e-2, "bound": 1.0}, _code("_penalty"), _code("_penalty_check"),
        treats={"exploding_gradients_over_time": 4},
    ),
    VANISHING_REGULARIZER,
    Remedy(
        "leaky_units", "Leaky-integration units with fixed leaks (Bengio, Boulanger-Lewandowski & Pascanu 2012)",
        {"leak_range": (0.02, 0.2), "seed": 0}, _code("_leaky"), _code("_leaky_check"),
        treats={"vanishing_gradients_over_time": 4},
    ),
    Remedy(
        "lstm", "Replace plain RNN layers by LSTMs (Hochreiter & Schmidhuber 1997)",
        {"forget_bias": FORGET_BIAS, "seed": 0}, _code("_gated", "lstm"), _code("_gated_check"),
        treats={"exploding_gradients_over_time": 6, "vanishing_gradients_over_time": 1},
    ),
    Remedy(
        "gru", "Replace plain RNN layers by GRUs (Cho et al. 2014)",
        {"forget_bias": FORGET_BIAS, "seed": 0}, _code("_gated", "gru"), _code("_gated_check"),
        treats={"exploding_gradients_over_time": 7, "vanishing_gradients_over_time": 2},
    ),
    Remedy(
        "echo_state", "Echo-state network: fixed reservoir, ridge-regression readout (Jaeger 2001)",
        {"reservoir_size": None, "spectral_radius": 0.95, "ridge": 1e-6, "seed": 0}, _code("_echo_state"), _code("_echo_state_check"),
        replaces_step=True, treats={"vanishing_gradients_over_time": 6},
    ),
)  # fmt: skip
