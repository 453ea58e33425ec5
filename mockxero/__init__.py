"""mockxero: a local, faithful stand-in for the Xero partner application API.

The server's names load on first use (PEP 562), so an application that
imports only :mod:`mockxero.client` pays for none of the server's libraries."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .certs import CertBundle
    from .clock import MockClock
    from .mock import ControlError, MockXero
    from .settings import Settings

__all__ = ["CertBundle", "ControlError", "MockClock", "MockXero", "Settings"]
__version__ = "0.1.0"

_LAZY = {"CertBundle": ".certs", "MockClock": ".clock", "ControlError": ".mock", "MockXero": ".mock",
         "Settings": ".settings"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
