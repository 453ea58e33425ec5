"""One settings object for the server, filled from defaults, ``MOCKXERO_*``
environment variables and command-line flags (in that order of precedence,
lowest first). The pytest plugin, the container and ``mockxero serve`` all
build their server from this one type."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting was given a value it cannot take."""


def parse_rate_limit(text: str) -> tuple[int, int] | None:
    """``"60/5000"`` → (60, 5000); ``"off"`` → None."""
    value = text.strip().lower()
    if value in ("off", "none", "0", "false", "no"):
        return None
    minute, sep, day = value.partition("/")
    try:
        per_minute, per_day = int(minute), int(day)
    except ValueError:
        raise SettingsError(
            f"rate limit must look like MINUTE/DAY (e.g. 60/5000) or 'off', not {text!r}"
        ) from None
    if not sep or per_minute < 1 or per_day < 1:
        raise SettingsError(f"rate limit must be two positive numbers MINUTE/DAY, not {text!r}")
    return per_minute, per_day


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"expected a boolean (true/false), not {text!r}")


@dataclasses.dataclass
class Settings:
    """Everything a running mock can be told. Lifetimes are seconds."""

    host: str = "127.0.0.1"
    port: int = 8443
    certs: Path = Path("certs")
    #: A SQLite file that keeps the durable state across restarts (None: memory only).
    state: Path | None = None
    #: Extra names for the server certificate's SANs (container names, aliases).
    hostnames: tuple[str, ...] = ()
    #: Skip the consent page: Authorize redirects at once with the default organisation.
    auto_approve: bool = False
    #: When set, every ``/_mockxero`` route wants ``Authorization: Bearer <token>``.
    admin_token: str | None = None
    #: Overrides scheme://host:port of the signature base string (behind a proxy).
    public_base_url: str | None = None

    access_token_ttl: int = 1800
    authorization_ttl: int = 31536000
    request_token_ttl: int = 1800
    #: The oauth_timestamp window, on the real clock (SPEC.md §3.6).
    timestamp_past: int = 1800
    timestamp_future: int = 300
    #: Give a new session handle on every renewal (Xero kept it; so do we by default).
    rotate_session_handle: bool = False
    #: (per rolling minute, per rolling day) of mock time, or None for off.
    rate_limit: tuple[int, int] | None = (60, 5000)

    journal_size: int = 1000
    #: Worker threads of the HTTPS server and its socket timeout (seconds).
    threads: int = 16
    socket_timeout: int = 10
    #: Seconds a new connection gets to finish its TLS handshake (it waits
    #: in the selector, not in a worker; capped at socket_timeout).
    handshake_timeout: float = 5.0
    #: Limits on a request head (the transport answers 414 / 431 past them),
    #: and the seconds from its first byte until the whole head has arrived
    #: (it waits in the selector, not in a worker; then 408).
    max_request_line: int = 32768
    max_header_bytes: int = 65536
    max_header_count: int = 100
    header_timeout: float = 10.0

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``MOCKXERO_<FIELD>`` variables, then ``overrides``
        (keys whose value is None are ignored, so CLI flags left unset do not
        hide the environment)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get("MOCKXERO_" + field.name.upper())
            if raw is not None:
                values[field.name] = _convert(field.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        for name in ("access_token_ttl", "authorization_ttl", "request_token_ttl"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")
        if self.timestamp_past < 0 or self.timestamp_future < 0:
            raise SettingsError("the timestamp window cannot be negative")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port {self.port} is out of range")
        if self.journal_size < 1 or self.threads < 1:
            raise SettingsError("journal_size and threads must be at least 1")
        if self.socket_timeout <= 0 or self.handshake_timeout <= 0 or self.header_timeout <= 0:
            raise SettingsError("socket_timeout, handshake_timeout and header_timeout must be positive")
        if min(self.max_request_line, self.max_header_bytes, self.max_header_count) < 1:
            raise SettingsError("max_request_line, max_header_bytes and max_header_count must be at least 1")


def _convert(name: str, raw: str) -> Any:
    field_types = {f.name: f.type for f in dataclasses.fields(Settings)}
    kind = str(field_types[name])
    try:
        if name == "rate_limit":
            return parse_rate_limit(raw)
        if name == "hostnames":
            return tuple(h.strip() for h in raw.split(",") if h.strip())
        if name == "certs":
            return Path(raw)
        if name == "state":
            return Path(raw) if raw else None
        if kind == "bool":
            return _parse_bool(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind.startswith("str"):
            return raw or None if "None" in kind else raw
    except ValueError as exc:
        if kind in ("int", "float"):
            raise SettingsError(f"MOCKXERO_{name.upper()} must be a number, not {raw!r}") from None
        raise SettingsError(f"MOCKXERO_{name.upper()}: {exc}") from None
    return raw
