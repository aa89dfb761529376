"""Compiled models: why the Monitor records no activation statistics under ``torch.compile``.

Module hooks that come for the scheduled steps and go after them change what dynamo
traced: each change fails a guard and recompiles the forward (until the recompile limit,
after which the model runs eagerly), and the hooks' side effects (storing statistics,
tensor hooks) break the graph. On a compiled model the Monitor therefore installs no
module hook: it records parameter statistics, which its optimizer hooks read outside
the compiled region exactly as without compile, warns once and records an
``activations_skipped`` event with the reason. To see activation statistics, monitor
the model without ``torch.compile`` for a while.

A model counts as compiled when it or one of its submodules is a ``torch.compile``
wrapper (``OptimizedModule``; also inside DDP) or was compiled in place
(``module.compile()``). A plain model passed to the Monitor while the loop calls a
separate ``torch.compile(model)`` cannot be seen: pass the compiled module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._failsafe import warn_at_user

if TYPE_CHECKING:  # the diagnosis reads ACTIVATIONS_SKIPPED without torch
    from torch import nn

ACTIVATIONS_SKIPPED = "activations_skipped"  # the event kind


def compiled_reason(model: nn.Module) -> str | None:
    """Why ``model`` runs compiled (a sentence naming the compiled module), or None."""
    from torch import nn

    for name, module in model.named_modules():  # the model itself first, then inside DDP...
        where = f"its module {name!r}" if name else "the model"
        inner = getattr(module, "_orig_mod", None)
        if type(module).__name__ == "OptimizedModule" and isinstance(inner, nn.Module):
            return f"{where} is compiled by torch.compile ({type(inner).__name__} in an OptimizedModule)"
        if getattr(module, "_compiled_call_impl", None) is not None:
            return f"{where} is compiled in place by torch.compile (module.compile())"
    return None


def skip_message(reason: str) -> str:
    """The one warning a Monitor gives when it skips activation statistics."""
    return (
        f"graddoctor: {reason}: activation statistics are not recorded on a compiled model "
        "(module hooks would break the compiled graph and make it recompile); parameter "
        "statistics are exact. Monitor the model without torch.compile to see activations."
    )


def warn_skipped(reason: str) -> None:
    """Give the warning at the user's line: the first caller outside graddoctor and torch."""
    warn_at_user(skip_message(reason))


__all__ = ["ACTIVATIONS_SKIPPED", "compiled_reason", "skip_message", "warn_skipped"]
