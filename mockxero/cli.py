"""``mockxero serve`` and ``mockxero certs``."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import ssl
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .certs import ALL_FILES, DEFAULT_HOSTNAMES, CertBundle, CertificatesError
from .settings import Settings, SettingsError, parse_rate_limit

ENV_NOTE = ("Every option can also be set as a MOCKXERO_<NAME> environment variable "
            "(MOCKXERO_PORT=0, MOCKXERO_AUTO_APPROVE=true, MOCKXERO_RATE_LIMIT=off, ...); "
            "a flag wins over the environment.")


def _rate_limit(text: str) -> Any:
    try:
        return parse_rate_limit(text) or "off"
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line: the usage dump
    hid the actual complaint under a screenful of options."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mockxero",
        description="A local, faithful stand-in for the Xero partner application API "
                    "(OAuth 1.0a with RSA-SHA1, 30-minute tokens renewed through OAuth Session, "
                    "an Entrust client certificate checked over mutual TLS).",
    )
    parser.add_argument("--version", action="version", version=f"mockxero {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="run the mock over HTTPS until Ctrl+C / SIGTERM",
        description="Serve the mock Xero partner API over HTTPS (mutual TLS). If the certs "
                    "folder is empty or absent, a full set of certificates is written there "
                    "first. It runs until Ctrl+C or SIGTERM. " + ENV_NOTE)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8443; 0 picks a free one)")
    serve.add_argument("--certs", type=Path, help="certificates folder (default ./certs)")
    serve.add_argument("--hostname", action="append", dest="hostnames", metavar="NAME",
                       help="extra name for the server certificate (repeatable), e.g. a compose service name")
    serve.add_argument("--auto-approve", action="store_const", const=True, default=None,
                       help="skip the consent page: Authorize approves at once for the first organisation")
    serve.add_argument("--admin-token", metavar="TOKEN",
                       help="require 'Authorization: Bearer TOKEN' on the /_mockxero control API")
    serve.add_argument("--rate-limit", type=_rate_limit, metavar="MINUTE/DAY",
                       help="API calls allowed per consumer and organisation (default 60/5000), or 'off'")
    serve.add_argument("--public-base-url", metavar="URL",
                       help="scheme://host:port clients use, when it differs from the Host header "
                            "(e.g. behind a proxy); the signature base string is built from it")
    serve.add_argument("--access-token-ttl", type=int, metavar="SECONDS", help="default 1800")
    serve.add_argument("--authorization-ttl", type=int, metavar="SECONDS", help="default 31536000")
    serve.add_argument("--log-level", default="WARNING",
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default WARNING")

    certs = sub.add_parser(
        "certs", help="write the certificates and keys into a folder",
        description="Write the mock's certificates (made with trustme) into DIR: "
                    + ", ".join(ALL_FILES) + ". Existing files are kept unless --force.")
    certs.add_argument("directory", type=Path, metavar="DIR")
    certs.add_argument("--hostname", action="append", dest="hostnames", default=[], metavar="NAME",
                       help="extra name for the server certificate (repeatable); always covered: "
                            + ", ".join(DEFAULT_HOSTNAMES))
    certs.add_argument("--force", action="store_true", help="overwrite an existing set")
    certs.add_argument("--variants", action="store_true",
                       help="also write client certificates for tests: entrust-expired-*, "
                            "entrust-not-yet-valid-*, entrust-foreign-ca-* (cert and key PEMs)")

    demo = sub.add_parser(
        "demo", help="the whole partner story against a mock, narrated",
        description="Run a Xero partner application's life with mockxero.client and narrate it: "
                    "request token, Authorize, access token, an API call, the clock moved past the "
                    "token's expiry, the automatic renewal, a revocation and the error that follows. "
                    "Without --server it starts a mock in this process. Exit status 0 only if every "
                    "step behaved as Xero would. The control API's admin token, if the mock has one, "
                    "comes from MOCKXERO_ADMIN_TOKEN.")
    demo.add_argument("--server", metavar="URL",
                      help="a running mock, e.g. https://127.0.0.1:8443 (default: start one here)")
    demo.add_argument("--certs", type=Path, metavar="DIR",
                      help="that mock's certificates folder (default ./certs with --server, "
                           "else a temporary one)")
    demo.add_argument("--browser", action="store_true",
                      help="approve in your browser instead of through the control API")
    health = sub.add_parser(
        "healthcheck", help="exit 0 when the mock on this machine is ready (a container's HEALTHCHECK)",
        description="GET https://localhost:PORT/_mockxero/health trusting CERTS/ca.pem (and with "
                    "the admin token, if one is set). It passes only once the certificates are "
                    "written and the listener answers. Reads the same MOCKXERO_PORT, MOCKXERO_CERTS "
                    "and MOCKXERO_ADMIN_TOKEN as 'serve'; a flag wins over the environment.")
    health.add_argument("--port", type=int, help="port the mock listens on (default 8443)")
    health.add_argument("--certs", type=Path, help="certificates folder holding ca.pem (default ./certs)")
    health.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS", help="default 3")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "certs":
            return _certs(args)
        if args.command == "demo":
            from .demo import run

            return run(args.server, args.certs, args.browser)
        if args.command == "healthcheck":
            return _healthcheck(args)
        return _serve(args)
    except (SettingsError, CertificatesError) as exc:
        print(f"mockxero: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a certificates folder that cannot be read or written
        print(f"mockxero: {exc}", file=sys.stderr)
        return 1


def _certs(args: argparse.Namespace) -> int:
    directory: Path = args.directory
    if args.force or not directory.exists() or not any(p.name in ALL_FILES for p in directory.iterdir()):
        bundle = CertBundle.generate(directory, args.hostnames)
        print(f"wrote a new set of certificates to {directory}")
    else:
        bundle = CertBundle.ensure(directory, args.hostnames)
        print(f"{directory} already holds a set; kept it (use --force to replace it)")
    if args.variants:
        for path in bundle.write_variants():
            print(f"wrote {path}")
    print(f"consumer key {bundle.consumer_key} (secret and p12 password in {directory / 'consumer.json'})")
    return 0


def _healthcheck(args: argparse.Namespace) -> int:
    """One line and exit 0 when healthy, one line on stderr and exit 1 when not."""
    settings = Settings.from_env(port=args.port, certs=args.certs)
    ca = settings.certs / "ca.pem"
    url = f"https://localhost:{settings.port}/_mockxero/health"
    try:
        context = ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        print(f"mockxero healthcheck: no usable {ca} yet ({exc})", file=sys.stderr)
        return 1
    headers = {"Authorization": f"Bearer {settings.admin_token}"} if settings.admin_token else {}
    # No proxy: the environment's HTTPS_PROXY must not send a loopback check elsewhere.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=args.timeout) as response:
            status = json.load(response).get("status")
    except urllib.error.HTTPError as exc:
        print(f"mockxero healthcheck: {url} answered {exc.code}", file=sys.stderr)
        return 1
    except (OSError, ValueError, AttributeError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"mockxero healthcheck: {url} is not answering ({reason})", file=sys.stderr)
        return 1
    if status != "ok":
        print(f"mockxero healthcheck: {url} says status {status!r}", file=sys.stderr)
        return 1
    print(f"mockxero healthcheck: {url} is ok")
    return 0


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    rate_limit = args.rate_limit
    settings = Settings.from_env(
        host=args.host, port=args.port, certs=args.certs,
        hostnames=tuple(args.hostnames) if args.hostnames else None,
        auto_approve=args.auto_approve, admin_token=args.admin_token,
        public_base_url=args.public_base_url,
        access_token_ttl=args.access_token_ttl, authorization_ttl=args.authorization_ttl,
    )
    if rate_limit is not None:
        settings = settings.replace(rate_limit=None if rate_limit == "off" else rate_limit)

    from .mock import MockXero

    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    mock = MockXero(settings)
    try:
        mock.start()
    except OSError as exc:
        why = str(exc)  # cheroot's bind error carries no errno, only this text
        if exc.errno == errno.EADDRINUSE or os.strerror(errno.EADDRINUSE) in why:
            why = ("the port is already in use (another mockxero?); pick another with --port, "
                   "or --port 0 for a free one")
        print(f"mockxero: cannot listen on {settings.host}:{settings.port}: {why}", file=sys.stderr)
        return 1
    print(banner(mock), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        mock.stop()
        print("mockxero stopped", flush=True)
    return 0


def banner(mock: Any) -> str:
    certs: Path = mock.certs.directory
    url = mock.url
    s = mock.settings
    limit = f"{mock.rate_limit[0]}/minute, {mock.rate_limit[1]}/day" if mock.rate_limit else "off"
    lines = [
        f"mockxero {__version__} — a local stand-in for the Xero partner API (not the real Xero)",
        "",
        f"  Base URL         {url}   (pyxero: api_url=\"{url}\")",
        f"  Consumer key     {mock.certs.consumer_key}",
        f"  Consumer secret  {mock.certs.consumer_secret}",
        f"  Trust this CA    {certs / 'ca.pem'}",
        f"  Client cert      {certs / 'entrust-cert.pem'} + {certs / 'entrust-private-nopass.pem'}",
        f"                   (or {certs / 'entrust-client.p12'}; "
        f"its password is in {certs / 'consumer.json'})",
        f"  Signing key      {certs / 'privatekey.pem'}  (RSA-SHA1; {certs / 'publickey.cer'} is registered)",
        f"  Authorize        {url}/oauth/Authorize?oauth_token=<request token>"
        + ("   (auto-approve is on)" if mock.auto_approve else ""),
        f"  Add-ons          {url}/addons",
        f"  Control API      {url}/_mockxero/health"
        + ("   (admin token required)" if s.admin_token else ""),
        f"  Rate limit       {limit}",
        "",
        "Next: sign a POST to /oauth/RequestToken with the key above, open the Authorize URL in",
        "a browser, then swap the verifier at /oauth/AccessToken. Quick check:",
        f"  curl --cacert {certs / 'ca.pem'} {url}/_mockxero/health",
        "Press Ctrl+C to stop.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
