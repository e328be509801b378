"""Frozen TorchScript graphs of a frozen model's top-level parts, for CPU inference with pre-packed oneDNN weights.

The third step of the frozen-teacher fast path on CPU (after :mod:`kd_suite.models.fold_bn` and
:mod:`kd_suite.models.frozen_rewrites`), applied to the private copy only. Each part that the forward calls once with
tensors (or lists of tensors) and that returns tensors is traced on the incoming batch, frozen and passed through
``torch.jit.optimize_for_inference``: convolution weights are pre-packed into oneDNN's blocked layout once instead of
being reordered at every call, and convolution + ReLU/add chains run fused. Outputs agree up to float rounding
(1.1–1.25× on SimpleBaseline-R50's backbone at 256×192 on 2 cores). Not every network gains: YOLOX (SiLU, large
maps) runs about 10 % slower traced, so the fast path traces only teachers that declare ``frozen_trace = True``
unless told otherwise (``FastPathOptions.trace``).

A traced graph is specialised to the input shape it was traced on, so the fast path keys traced copies by input shape
and checks each against the plain teacher when it is built. Parts called with keyword arguments, more than once, or
with non-tensor inputs stay eager (their own parts may be traced), as does any part whose trace fails.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["TracedPart", "trace_children"]


class TracedPart(nn.Module):
    """A frozen, inference-optimised TorchScript graph standing in for one child module.

    Args:
        graph: the ``torch.jit.optimize_for_inference`` output.
        name: the replaced child's name (for reports).
    """

    def __init__(self, graph: torch.jit.ScriptModule, name: str) -> None:
        super().__init__()
        self.graph, self.name = graph, name

    def forward(self, *args: Any) -> Any:
        return self.graph(*args)


def _tensors(value: Any) -> bool:
    """True for a tensor or a (nested) list/tuple made only of tensors."""
    if isinstance(value, Tensor):
        return True
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(_tensors(v) for v in value)


def trace_children(model: nn.Module, image: Tensor) -> list[str]:
    """Replace each eligible part of ``model`` by its :class:`TracedPart`, traced on ``model(image)``.

    Walks the module tree from the top: a child called once with tensors that returns tensors is traced; any other
    child (never called itself, like a ``ModuleList``, or called with keyword arguments) is walked into.

    Returns:
        the qualified names of the replaced parts (``[]`` when none was eligible or every trace failed).
    """
    calls: dict[nn.Module, list[tuple[tuple, dict, Any]]] = {}

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        calls.setdefault(module, []).append((args, kwargs, output))

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    traced: list[str] = []

    def walk(parent: nn.Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            seen = calls.get(child, [])
            qualified = f"{prefix}{name}"
            if len(seen) == 1 and _eligible(*seen[0]):
                graph = _trace(child, seen[0][0])
                if graph is not None:
                    setattr(parent, name, TracedPart(graph, qualified))
                    traced.append(qualified)
                    continue
            if len(seen) <= 1:
                walk(child, f"{qualified}.")

    walk(model, "")
    return traced


def _eligible(args: tuple, kwargs: dict, output: Any) -> bool:
    return not kwargs and len(args) > 0 and all(_tensors(a) for a in args) and _tensors(output)


def _trace(module: nn.Module, args: tuple) -> torch.jit.ScriptModule | None:
    """The frozen, inference-optimised trace of ``module`` on ``args``; ``None`` when it cannot be traced."""
    if isinstance(module, (nn.ModuleList, nn.ModuleDict)) or not any(True for _ in module.parameters()):
        return None  # containers are not callable; parameter-free parts gain nothing
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on shape-specialised values: copies are keyed by shape
            graph = torch.jit.trace(module, args, check_trace=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(graph.eval()))
    except Exception:  # noqa: BLE001 - an untraceable part stays eager (same outputs, no speed-up)
        return None
