"""Teacher weights: loading (kd-suite checkpoint, plain state_dict or safetensors), freezing and fingerprints."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (teacher provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read model weights from a kd-suite/Lightning checkpoint, a plain state_dict file or a safetensors file.

    A kd-suite checkpoint stores the trained network under the ``student.`` prefix; that prefix is stripped, as is a
    DDP ``module.`` prefix. Pickled files are opened with ``weights_only=True``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file holds no tensor state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher weights {str(path)!r} not found; train a teacher first or fix teacher_ckpt")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (or a checkpoint with 'state_dict')")
    if any(k.startswith("student.") for k in state):
        state = {k[len("student.") :]: v for k, v in state.items() if k.startswith("student.")}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, path: str | Path) -> str:
    """Load weights into ``model`` strictly and return the file's sha256.

    Raises:
        ValueError: keys or shapes do not match the model; the message names the file and the first mismatches.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what}: {keys[:5]}{' …' if len(keys) > 5 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong))
            if keys
        )
        raise ValueError(
            f"teacher weights {str(path)!r} do not fit {type(model).__name__} ({detail}); "
            "check that the teacher architecture in the config is the one the checkpoint was trained with"
        )
    model.load_state_dict(state, strict=True)
    return sha256_file(path)


def freeze(model: nn.Module) -> nn.Module:
    """Turn off gradients and put ``model`` in eval mode (BN statistics and dropout frozen)."""
    model.requires_grad_(False)
    return model.eval()


def fingerprint(model: nn.Module) -> str:
    """sha256 over every parameter and buffer (names, dtypes, bytes): equal iff the state is bit-identical."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
