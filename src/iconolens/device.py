"""Which device a network runs on: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from iconolens.errors import BadInputError

if TYPE_CHECKING:
    import torch

#: What ``--device`` takes, for the commands' help.
DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps."
_SPELLING = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve_device(name: str = "auto") -> "torch.device":
    """The ``torch.device`` for ``name``, or one sentence saying why it cannot be used here."""
    import torch  # here, so that the commands' help does not wait for torch

    text = (name or "auto").strip().lower()
    if not _SPELLING.match(text):
        raise BadInputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BadInputError(f"device {name!r} was asked for, but this machine has no CUDA device; use cpu")
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise BadInputError(
                f"device {name!r} was asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    if text == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BadInputError("device 'mps' was asked for, but this machine has no Apple GPU; use cpu")
    return torch.device(text)
