"""Teacher weights: loading (kd-suite checkpoint, plain state_dict or safetensors), freezing and fingerprints."""

from __future__ import annotations

import hashlib
import pickle
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


class TeacherFileError(ValueError):
    """A teacher weights file is unreadable, holds something other than tensors, or does not fit the teacher.

    The message is one line naming the file, what is wrong with it and what is expected.
    """


_EXPECTED = "expected a kd-suite/Lightning checkpoint, a torch.save'd state_dict or a .safetensors file"


def _diagnose(head: bytes, size: int, err: BaseException) -> str:
    """What is wrong with a weights file torch could not load, from its first bytes (never torch's own hint)."""
    if size == 0:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04"):
        return f"a torch zip checkpoint that is truncated or corrupt ({size:,} bytes; re-copy or re-save it)"
    if head[:1] == b"\x80" and isinstance(err, pickle.UnpicklingError) and "weights_only" in str(err):
        return "a pickle holding Python objects besides tensors (kd-suite loads tensors only, so it is not read)"
    if head[:1] == b"\x80" or isinstance(err, (EOFError, RuntimeError)):
        return f"a legacy torch pickle that is truncated or corrupt ({size:,} bytes)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and sum(c.isprintable() or c.isspace() for c in text) >= 0.95 * len(text):
        return f"a text file (it starts {text[:40].strip()!r}), not a weights file"
    return "not a PyTorch checkpoint or safetensors file (unrecognised content)"


def _looks_like_safetensors(head: bytes) -> bool:
    """A safetensors file starts with an 8-byte little-endian header length followed by a json object."""
    return len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000


def _load(path: Path) -> object:
    """The object stored in a weights file, or a :class:`TeacherFileError` saying what the file is instead."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(512)
    if path.suffix == ".safetensors" or _looks_like_safetensors(head):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise TeacherFileError(
                f"teacher weights {str(path)!r}: a truncated or corrupt safetensors file ({size:,} bytes); {_EXPECTED}"
            ) from err
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # OSError, KeyError, UnpicklingError, RuntimeError ... depending on the damage
        raise TeacherFileError(f"teacher weights {str(path)!r}: {_diagnose(head, size, err)}; {_EXPECTED}") from err


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read model weights from a kd-suite/Lightning checkpoint, a plain state_dict file or a safetensors file.

    A kd-suite checkpoint stores the trained network under the ``student.`` prefix; that prefix is stripped, as is a
    DDP ``module.`` prefix. Pickled files are opened with ``weights_only=True``; a safetensors file is recognised by
    its suffix or its header.

    Raises:
        FileNotFoundError: the file does not exist.
        TeacherFileError: the file is empty, truncated, corrupt, text, or holds no tensor state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher weights {str(path)!r} not found; train a teacher first or fix teacher_ckpt")
    state = _load(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TeacherFileError(
            f"teacher weights {str(path)!r}: holds {type(state).__name__} {_summary(state)}, expected a state dict "
            "of tensors (or a checkpoint with 'state_dict')"
        )
    if any(k.startswith("student.") for k in state):
        state = {k[len("student.") :]: v for k, v in state.items() if k.startswith("student.")}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _summary(value: object) -> str:
    if isinstance(value, dict):
        return f"with keys {list(value)[:4]}" if value else "that is empty"
    return ""


def load_weights(model: nn.Module, path: str | Path) -> str:
    """Load weights into ``model`` strictly and return the file's sha256.

    Raises:
        TeacherFileError: the file is unreadable (see :func:`read_state_dict`), or its keys or shapes do not match
            the model; the one-line message names the file, the first mismatches and what the model expects.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)}≠{tuple(own[k].shape)}"
        for k in own
        if k in state and own[k].shape != state[k].shape
    ]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what} {len(keys)}: {keys[:3]}{' …' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong))
            if keys
        )
        raise TeacherFileError(
            f"teacher weights {str(path)!r} do not fit {type(model).__name__} ({detail}); expected the "
            f"{len(own)} tensors of the configured {type(model).__name__}: check that the teacher architecture in "
            "the config is the one the checkpoint was trained with"
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
