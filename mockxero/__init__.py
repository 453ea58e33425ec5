"""mockxero: a local, faithful stand-in for the Xero partner application API."""

from .certs import CertBundle
from .clock import MockClock
from .mock import ControlError, MockXero
from .settings import Settings

__all__ = ["CertBundle", "ControlError", "MockClock", "MockXero", "Settings"]
__version__ = "0.1.0"
