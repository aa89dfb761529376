r"""Remedies for vanishing and exploding gradients through time in recurrent networks.

For :math:`h_t = f(W_{ih} x_t + W_{hh} h_{t-1} + b)` the gradient through time is a
product of Jacobians :math:`\partial h_i / \partial h_{i-1} = \operatorname{diag}(f'(a_i))
W_{hh}`, bounded by :math:`(\gamma_W \gamma_h)^{t-k}`; it vanishes or explodes
geometrically in :math:`t - k`. The remedies here act on that product:

* :func:`tbptt` — truncated BPTT, at most ``k`` factors (against explosion);
* :func:`recurrent_penalty`, :func:`constrain_spectral_norm_`, :class:`SpectralConstraint`,
  :func:`spectral_constraint_step` — keep :math:`\|W_{hh}\|` small (against explosion);
* :func:`orthogonal_recurrent_init_` — start with all eigenvalues of modulus 1;
* :func:`swap_rnn_` — gated units (LSTM / GRU) with an additive memory path;
  :func:`set_forget_bias_` starts their forget gate at a long memory time constant;
* :class:`ElmanRNN` and :class:`SequenceModel` — a plain RNN whose states can be reached,
  and the core + head wrapper the remedies and scenarios use;
* :class:`LeakyRNN` — leaky-integration units (:mod:`.leaky`);
* :func:`omega_step` — Pascanu's :math:`\Omega` regulariser (:mod:`.omega`);
* :class:`EchoStateNetwork` — a fixed reservoir and a readout fitted in closed form
  (:mod:`.echo_state`).

Source: Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent neural
networks", ICML; written up by Jefkine (2018), "Vanishing and exploding gradient problems".
"""

from graddoctor.remedies.recurrent.cells import (
    ElmanRNN,
    RecurrentCore,
    RecurrentTrace,
    record_recurrent_traces,
)
from graddoctor.remedies.recurrent.echo_state import EchoStateNetwork
from graddoctor.remedies.recurrent.leaky import LeakyRNN
from graddoctor.remedies.recurrent.model import (
    SequenceModel,
    detach_hidden,
    find_recurrent_modules,
)
from graddoctor.remedies.recurrent.omega import omega_step, vanishing_gradient_regularizer
from graddoctor.remedies.recurrent.swap import set_forget_bias_, swap_rnn_
from graddoctor.remedies.recurrent.tbptt import tbptt
from graddoctor.remedies.recurrent.weights import (
    SpectralConstraint,
    constrain_spectral_norm_,
    orthogonal_recurrent_init_,
    recurrent_penalty,
    recurrent_weights,
    spectral_constraint_step,
)

__all__ = [
    "EchoStateNetwork",
    "ElmanRNN",
    "LeakyRNN",
    "RecurrentCore",
    "RecurrentTrace",
    "SequenceModel",
    "SpectralConstraint",
    "constrain_spectral_norm_",
    "detach_hidden",
    "find_recurrent_modules",
    "omega_step",
    "orthogonal_recurrent_init_",
    "record_recurrent_traces",
    "recurrent_penalty",
    "recurrent_weights",
    "set_forget_bias_",
    "spectral_constraint_step",
    "swap_rnn_",
    "tbptt",
    "vanishing_gradient_regularizer",
]
