"""mockxero: a local, faithful stand-in for the Xero partner application API.

The names below load on first use (PEP 562), so that ``import
mockxero.problems`` or ``import mockxero.client`` pays for none of the
server's libraries (Flask, cheroot, pyOpenSSL, trustme)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .certs import CertBundle
    from .clock import MockClock
    from .core import MockCore
    from .mock import MockXero
    from .operations import ControlError, Operations
    from .settings import Settings

__all__ = ["CertBundle", "ControlError", "MockClock", "MockCore", "MockXero", "Operations", "Settings"]
__version__ = "0.1.0"

_WHERE = {
    "CertBundle": ".certs",
    "ControlError": ".operations",
    "MockClock": ".clock",
    "MockCore": ".core",
    "MockXero": ".mock",
    "Operations": ".operations",
    "Settings": ".settings",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mockxero' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
