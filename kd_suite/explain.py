"""Short command-line messages for user errors: configuration, data, checkpoints, model/data mismatch, divergence.

``kd-suite`` prints the problem and its fix in a few lines instead of a jsonargparse/Lightning traceback ending in a
Namespace dump; a misspelled key gets the closest valid key. :func:`explain` returns ``None`` for anything that is not
a user error (a bug keeps its traceback), and ``--debug`` / ``KD_SUITE_DEBUG=1`` always shows the traceback.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A class named in the config rejected its arguments (raised while the CLI instantiates the classes)."""


@dataclass
class Explained:
    """A user error's message for the terminal and the exit code (2: configuration, 1: data, checkpoint, run)."""

    message: str
    code: int


def _user_errors() -> list[tuple[type[BaseException], str, int]]:
    from .callbacks import TeacherIntegrityError
    from .consistency import ConsistencyError
    from .data.errors import DatasetError
    from .guards import DivergenceError
    from .models.pretrained import PretrainedWeightsError
    from .teacher import TeacherFileError

    return [
        (DatasetError, "data error", 1),
        (TeacherFileError, "checkpoint error", 1),
        (ConsistencyError, "", 1),
        (DivergenceError, "training stopped", 1),
        (TeacherIntegrityError, "training stopped", 1),
        (PretrainedWeightsError, "pretrained weights unavailable", 1),
        (FileNotFoundError, "file not found", 1),
        (ConfigError, "configuration error", 2),
    ]


def _chain(err: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while err is not None and err not in out and len(out) < 20:
        out.append(err)
        err = err.__cause__ or err.__context__
    return out


def _clean(text: str) -> str:
    """One line: a DataLoader worker's re-raised message loses its traceback, whitespace is collapsed."""
    if "Original Traceback" in text:
        text = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = re.sub(r"^[\w.]+(Error|Exception): ", "", text.strip())
    return " ".join(text.split())


def explain(err: BaseException, argv: list[str] | None = None) -> Explained | None:
    """The short message for ``err``, or ``None`` when it is not a user error."""
    if isinstance(err, argparse.ArgumentError):
        return Explained(f"configuration error: {parse_error(err, argv or [])}", 2)
    chain = _chain(err)
    for kind, label, code in _user_errors():
        found = next((e for e in chain if isinstance(e, kind)), None)
        if found is not None:
            if kind is ConfigError:  # a constructor's own message, under jsonargparse's Union wrappers
                found = _innermost(chain)
            text = _clean(str(found))
            return Explained(f"{label}: {text}" if label else text, code)
    return None


def _innermost(chain: list[BaseException]) -> BaseException:
    """The deepest exception of the chain that is not one of jsonargparse's wrappers."""
    wrappers = ("Does not validate against any of the Union subtypes", "Problem with given class_path")
    useful = [e for e in chain if not any(str(e).lstrip().startswith(w) for w in wrappers)]
    return useful[-1] if useful else chain[-1]


# ---------------------------------------------------------------------------------------------------------- parsing
_NOISE = ("Given value", "Subtypes:", "Errors:", "Does not validate", "Expected a <class 'NoneType'>", "Parser key")


def parse_error(err: argparse.ArgumentError, argv: list[str]) -> str:
    """A misspelled option or key with the closest valid one, or the gist of any other parse error."""
    message = str(err.message if getattr(err, "message", None) else err)
    unknown = re.match(r"unrecognized arguments: (.*)", message.strip(), re.S)
    if unknown:
        options = sorted({o for p in getattr(err, "kd_parsers", []) if p is not None for o in _options(p)})
        parts = []
        for token in unknown.group(1).split():
            key = token.split("=", 1)[0]
            parts.append(f"unknown option {key}{_hint(key, options)}" if key.startswith("--") else f"stray {token!r}")
        return "; ".join(parts)
    rejected = list(re.finditer(r"Option '([^']+)' is not accepted|Key '([^']+)' is not expected", message))
    if rejected:
        return "; ".join(_rejected_key(message, m, argv) for m in rejected)
    lines = [line.strip().removeprefix("- ") for line in message.splitlines()]
    gist = [line for line in lines if line and not line.startswith(_NOISE) and not line.startswith("Problem with")]
    keys = re.findall(r'Parser key "([^"]+)"', message)
    given = re.findall(r"^\s*Given value: (.{0,60})", message, re.M)
    prefix = f"{'.'.join(keys)}: " if keys else ""
    suffix = f" (given: {given[-1].strip()})" if given and "Namespace(" not in given[-1] else ""
    return prefix + (" ".join("; ".join(gist[-3:]).split()) or message.strip().splitlines()[0]) + suffix


def _options(parser: Any) -> list[str]:
    return [o for action in getattr(parser, "_actions", []) for o in action.option_strings if o.startswith("--")]


def _hint(key: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _rejected_key(message: str, match: re.Match, argv: list[str]) -> str:
    """``Option 'temprature' is not accepted`` under ``class_path 'X'``: the key, X's closest parameter, its keys."""
    key = match.group(1) or match.group(2)
    owners = re.findall(r"Problem with given class_path '([^']+)'", message[: match.start()])
    owner = owners[-1] if owners else None
    given = next((a.split("=", 1)[0] for a in argv if re.search(rf"[.-]{re.escape(key)}(=|$)", a)), None)
    where = f" in {given}" if given else ""
    if owner is None:
        return f"unknown key {key!r}{where}"
    valid = init_parameters(owner)
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], valid, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    shown = ", ".join(valid[:12]) + (", …" if len(valid) > 12 else "")
    return f"unknown key {key!r} for {owner}{where}{hint}; its keys are: {shown}"


def init_parameters(class_path: str) -> list[str]:
    """Constructor parameter names of ``class_path``, following ``**kwargs`` up the base classes."""
    try:
        module, name = class_path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            break
        names += [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return list(dict.fromkeys(names))
