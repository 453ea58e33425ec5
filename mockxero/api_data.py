"""Seed data for each organisation's API collections (filled in by the API issue)."""

from __future__ import annotations

from .store import Organisation


def seed(org: Organisation, now: float) -> None:
    """Give a new organisation its demo contacts and invoices."""
    org.collections.setdefault("Contacts", __import__("collections").OrderedDict())
    org.collections.setdefault("Invoices", __import__("collections").OrderedDict())
