r"""Zero-code instrumentation: run an unmodified training script with a Monitor on every optimizer.

``graddoctor run train.py -- ARGS`` calls :func:`run_instrumented`, which runs the script
in this process (``runpy.run_path(script, run_name="__main__")`` with
``sys.argv = [script, *ARGS]``) after installing process-wide instrumentation:

* **model discovery**: a global module forward pre-hook and forward hook
  (``torch.nn.modules.module.register_module_forward_[pre_]hook``) record the *root*
  modules (called while no other module's forward runs) with their last inputs, and the
  last call of a root loss module (``nn.modules.loss._Loss``) with its target;
* **optimizers**: a global optimizer step pre-hook
  (``torch.optim.optimizer.register_optimizer_step_pre_hook``) attaches a
  :class:`~graddoctor.Monitor` to each optimizer at its first ``step()``, on the smallest
  root module whose parameters cover the optimizer's (else on a container of the roots
  that own them). Global pre-hooks run before an optimizer's own, so the new Monitor's
  hooks already see that first step. One run file per optimizer under ``out_dir``:
  ``<script>-<time>-opt<i>.gdr``; each records its optimizer's parameters only (a GAN's
  two optimizers: two runs). Activation statistics start at step 1 (step 0's forward
  ran before the Monitor existed). With ``step(closure)`` (LBFGS) the model is called
  inside the step: the Monitor is attached, and the step measured, when the closure's
  first call returns. A wrapper optimizer stepping the optimizer it wraps (a global
  post-hook follows who is inside ``step()``) gets the one run;
* **no optimizer**: while none has stepped, each ``backward()`` is a step (loops that
  update weights by hand, ``p.data.add_(p.grad, alpha=-lr)``): one run
  ``<script>-<time>-backward.gdr``, dropped at the first optimizer step (see
  :mod:`~graddoctor.integrations._zero_code_backward`);
* **loss**: ``torch.autograd.backward`` (which ``Tensor.backward`` calls) is wrapped to
  keep the one-element tensors backpropagated; the sum of those since the previous
  optimizer step is logged as the step's ``loss`` (under gradient accumulation with
  ``loss / N`` the mean over the micro-batches; see
  :mod:`~graddoctor.integrations._zero_code_losses`). Under ``GradScaler`` that is the
  *scaled* loss;
* **torch.compile**: the global module hooks do nothing inside traced code, so a
  compiled model is found as the ``OptimizedModule`` the loop calls, with no graph
  break; its Monitor records parameter statistics and no activation statistics (one
  warning, and an ``activations_skipped`` event), and a NaN replay runs it eagerly;
* **NaN/Inf**: after the Monitor has read the gradients and before the update, one
  host sync per step checks that the loss and every gradient norm are finite. At the
  first step that is not, the root model's last batch is replayed under
  :func:`~graddoctor.probes.nonfinite_replay.locate_nonfinite` with the weights that produced
  it (no copy of the weights is kept: the update has not happened yet) and the result is
  recorded as a ``nonfinite_source`` event, which ``diagnose`` reports. When the script
  raises before stepping (``if not torch.isfinite(loss): raise ...``), the same replay
  runs on the current weights at shutdown. The replay's loss is the script's loss module
  when its input had the model's output shape, else the sum of the outputs (see
  :func:`~graddoctor.integrations._zero_code_models.replay_batch`). A loss computed after
  the last step (the one the script died on) goes to the optimizer whose model ran last
  before it. No replay for a container of several models, nor for a model called with
  positional and keyword arguments together;
* **shutdown**: whether the script returns, calls ``sys.exit`` or raises, every Monitor
  is flushed and closed (``try/finally``, plus an ``atexit`` guard), the exception is
  recorded as an ``exception`` event, and every global hook and patch is removed, so the
  process is as before and :func:`run_instrumented` can run again.

Costs: two Python global module hooks on every module call; a Monitor measuring the
first ``backward()`` until the first optimizer step; one extra host sync per step
for the finiteness check (``locate=False`` drops it); one batch of inputs kept alive
(references, not copies); no copy of the weights. Limits: an optimizer that never steps
gets no run file; plain tensors (not ``nn.Parameter``) that no module owns are not
monitored; single-process, single-thread training loops only (``torch.distributed``
launchers start other processes). The script's arguments follow ``--`` on the command
line: ``graddoctor run train.py -- --lr 0.1``.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..monitor.schedules import Schedule
from ._zero_code_hooks import Instrumentation

# torch.compile(module) warns when global module hooks exist that they also fire for its
# wrapper: the root tracker counts that call as the root and ignores traced ones
_GLOBAL_HOOKS_WARNING = r"Using `torch.compile\(module\)` when there are global hooks"


@dataclass
class ScriptResult:
    """What :func:`run_instrumented` returns.

    ``exit_code`` is the script's own (0, ``sys.exit``'s code, 1 when it raised, 130 on
    Ctrl-C), ``run_paths`` one run file per optimizer that stepped, ``error`` the
    exception that ended the script (None on a normal exit) and ``traceback`` its
    traceback as Python would print it (from the script's frame on).
    """

    exit_code: int
    run_paths: list[Path] = field(default_factory=list)
    error: BaseException | None = None
    traceback: str = ""


def _exit_code(code: Any) -> int:
    """The process exit status ``sys.exit(code)`` gives (None 0, an int itself, else 1)."""
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return 1 if not isinstance(code, bool) else int(code)


def _script_traceback(error: BaseException) -> str:
    """The traceback from the first frame outside graddoctor and runpy, as Python prints it."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") in (__name__, "runpy"):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


def run_instrumented(
    script: str | os.PathLike,
    args: Sequence[str] = (),
    out_dir: str | os.PathLike = "runs",
    *,
    every: int | Schedule | str = "auto",
    activations_every: int | Schedule | None = 10,
    modules: str | list[str] = "leaf",
    locate: bool = True,
    guard: bool = False,
) -> ScriptResult:
    r"""Run a training script unmodified, with a Monitor on every optimizer it steps.

    The script runs in this process as ``__main__`` with ``sys.argv = [script, *args]``
    and its folder first on ``sys.path``; ``sys.argv``, ``sys.path`` and every torch
    global hook or patch are restored afterwards, also when it raises.

    Args:
        script: path of the ``.py`` training script.
        args: its command-line arguments.
        out_dir: folder of the run files (one per optimizer, ``<script>-<time>-opt<i>.gdr``).
        every: schedule of parameter statistics.
        activations_every: schedule of activation statistics (from step 1); None never.
        modules: which modules' activations to record.
        locate: replay the first non-finite step to name the module where NaN/Inf began.
        guard: protect each optimizer with a :class:`~graddoctor.Guard`.

    Returns:
        a :class:`ScriptResult` (the exception, if any, is caught and returned, not raised).

    Raises:
        FileNotFoundError: ``script`` is not a file.
        TypeError: ``args`` is a single string instead of a list of arguments.
    """
    path = Path(script)
    if not path.is_file():
        raise FileNotFoundError(f"no training script at {path}: pass the path of a Python file")
    if isinstance(args, (str, bytes)):
        raise TypeError(
            f"args must be a list of arguments, e.g. {str(args).split()!r}, not one string"
        )
    args = [str(arg) for arg in args]
    instrumentation = Instrumentation(
        out_dir,
        name=path.stem,
        every=every,
        activations_every=activations_every,
        modules=modules,
        locate=locate,
        config={"script": str(path), "args": args},
        guard=guard,
    )
    result = ScriptResult(0)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(path), *args]
    sys.path.insert(0, str(path.resolve().parent))
    instrumentation.install()
    try:
        with warnings.catch_warnings():  # torch's warning about global hooks is about ours, handled
            warnings.filterwarnings("ignore", message=_GLOBAL_HOOKS_WARNING, category=UserWarning)
            runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exit_:
        result.exit_code = _exit_code(exit_.code)
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
        result.error = exit_ if result.exit_code else None
    except BaseException as error:  # the script's failure is reported, not raised
        result.exit_code = 130 if isinstance(error, KeyboardInterrupt) else 1
        result.error, result.traceback = error, _script_traceback(error)
    finally:
        try:
            instrumentation.close(result.error)
        finally:
            sys.argv = saved_argv
            sys.path[:] = saved_path
    result.run_paths = list(instrumentation.run_paths)
    return result


__all__ = ["Instrumentation", "ScriptResult", "run_instrumented"]
