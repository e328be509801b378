"""timm models with ImageNet weights that never hang offline: a quick reachability probe, the HF cache, one message.

timm downloads ``pretrained=True`` weights from the Hugging Face hub; without network it retries for about a minute
and fails with a long traceback. :func:`create_timm_model` probes the hub first (a 3 s TCP connect); when it cannot
be reached the download runs in huggingface_hub's offline mode, so weights already in the local cache load at once
and missing ones fail immediately with :class:`PretrainedWeightsError` saying what to do. Commands whose result does
not depend on the weights (``kd-suite profile``) build the models under :func:`no_pretrained_weights`.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import timm
from torch import nn

_SKIP = False
_REACHABLE: dict[str, bool] = {}


class PretrainedWeightsError(OSError):
    """The pretrained weights of a backbone are neither in the local cache nor downloadable."""


@contextlib.contextmanager
def no_pretrained_weights() -> Iterator[None]:
    """Build every backbone with random weights inside this context (for profiling: FLOPs do not depend on them)."""
    global _SKIP
    previous, _SKIP = _SKIP, True
    try:
        yield
    finally:
        _SKIP = previous


def hub_endpoint() -> str:
    """The Hugging Face endpoint timm downloads from (``HF_ENDPOINT`` or huggingface.co)."""
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except ImportError:  # pragma: no cover - huggingface_hub ships with timm
        return "https://huggingface.co"


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when a TCP connection to the hub endpoint opens within ``timeout`` seconds (probed once per process)."""
    url = urlsplit(hub_endpoint())
    key = f"{url.hostname}:{url.port}"
    if key not in _REACHABLE:
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            with socket.create_connection((url.hostname or "", port), timeout=timeout):
                _REACHABLE[key] = True
        except OSError:
            _REACHABLE[key] = False
    return _REACHABLE[key]


@contextlib.contextmanager
def _hub_offline(enabled: bool) -> Iterator[None]:
    """huggingface_hub's offline mode (cache only, no request) while ``enabled``."""
    if not enabled:
        yield
        return
    from huggingface_hub import constants

    previous, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def create_timm_model(name: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=..., **kwargs)`` that fails fast and clearly when weights are unavailable.

    Raises:
        PretrainedWeightsError: ``pretrained`` is set and the weights are not cached and cannot be downloaded.
    """
    if not pretrained or _SKIP:
        return timm.create_model(name, pretrained=False, **kwargs)
    offline = not hub_reachable()
    try:
        with _hub_offline(offline):
            return timm.create_model(name, pretrained=True, **kwargs)
    except OSError as err:  # huggingface_hub's LocalEntryNotFoundError, urllib's URLError, connection errors
        where = f"{hub_endpoint()} cannot be reached" if offline else "the download failed"
        raise PretrainedWeightsError(
            f"timm backbone {name!r} has pretrained: true, but its ImageNet weights are not in the local cache and "
            f"{where} ({type(err).__name__}). Fix: run once with network access to cache them (HF_HOME), or set "
            "pretrained: false in the model's init_args"
        ) from err
