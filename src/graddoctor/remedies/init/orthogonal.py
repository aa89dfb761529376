r"""Orthogonal and identity initialisers for deep and recurrent weights (re-exported by ``graddoctor.init``)."""

from __future__ import annotations

import torch

from graddoctor.remedies.init.schemes import check_float_tensor


def orthogonal_(
    tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Fill ``tensor`` with a Haar-distributed (semi-)orthogonal matrix times ``gain``.

    The weight is viewed as a ``(rows, prod(trailing dims))`` matrix :math:`W`; a Gaussian
    matrix is QR-factorised and :math:`Q` is multiplied by :math:`\operatorname{sign}(\operatorname{diag} R)`
    so that its distribution is uniform (Haar) over the orthogonal group (Mezzadri 2007,
    "How to generate random matrices from the classical compact groups"). Then

    .. math::
        W W^\top = \text{gain}^2 I \ (\text{rows} \le \text{cols}), \qquad
        W^\top W = \text{gain}^2 I \ (\text{rows} > \text{cols}).

    Saxe, McClelland & Ganguli (2014), "Exact solutions to the nonlinear dynamics of
    learning in deep linear neural networks". Same draw as ``torch.nn.init.orthogonal_``.

    Args:
        tensor: a weight with at least 2 dimensions, filled in place.
        gain: multiplier of the matrix.
        generator: optional ``torch.Generator``.

    Returns:
        ``tensor``.
    """
    check_float_tensor(tensor)
    if tensor.dim() < 2:
        raise ValueError(
            f"orthogonal_ needs a tensor with at least 2 dimensions, got shape {tuple(tensor.shape)}"
        )
    if tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    # QR is not implemented for half precision: sample and factorise in float32 then
    work_dtype = torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.dtype
    with torch.no_grad():
        gaussian = torch.empty((rows, cols), dtype=work_dtype, device=tensor.device)
        gaussian.normal_(0.0, 1.0, generator=generator)
        if rows < cols:
            gaussian = gaussian.t()
        q, r = torch.linalg.qr(gaussian)
        q = q * torch.diagonal(r).sign()
        if rows < cols:
            q = q.t()
        tensor.copy_(q.reshape(tensor.shape))
        tensor.mul_(gain)
    return tensor


def identity_(tensor: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    r"""Fill a square recurrent weight with :math:`\text{gain} \cdot I` (IRNN).

    Le, Jaitly & Hinton (2015), "A Simple Way to Initialize Recurrent Networks of
    Rectified Linear Units": with :math:`W_{hh} = I` and zero bias a ReLU RNN starts by
    copying its state, so gradients neither vanish nor explode through time.

    Only square 2-D tensors are accepted. For ``nn.RNN`` with ``nonlinearity="relu"`` the
    ``weight_hh_l*`` is square already; for the stacked gates of LSTM/GRU initialise each
    gate block (views write through): ``for block in w.chunk(4): identity_(block)``.

    Args:
        tensor: a square ``(n, n)`` matrix, filled in place.
        gain: the diagonal value.

    Returns:
        ``tensor``.
    """
    check_float_tensor(tensor)
    if tensor.dim() != 2 or tensor.shape[0] != tensor.shape[1]:
        raise ValueError(
            f"identity_ needs a square 2-D matrix, got shape {tuple(tensor.shape)}; for stacked "
            "LSTM/GRU gate weights initialise each block: for b in w.chunk(n_gates): identity_(b)"
        )
    with torch.no_grad():
        tensor.zero_()
        tensor.diagonal().fill_(gain)
    return tensor
