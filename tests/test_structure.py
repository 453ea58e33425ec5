"""The shape the rest stands on: the control routes and the Python
operations are one set of operations; the package imports in floors, never
in a circle; the client-side modules load none of the server."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from mockxero import ControlError, MockXero
from mockxero.operations import OPERATIONS, Operations

from .helpers import Control, Partner

PACKAGE = Path(__file__).resolve().parent.parent / "mockxero"
SERVER_LIBRARIES = ("flask", "werkzeug", "cheroot", "OpenSSL", "trustme", "jinja2")


# -- imports -------------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["mockxero", "mockxero.problems", "mockxero.operations",
                                    "mockxero.client"])
def test_client_side_modules_load_no_server_library(module: str) -> None:
    code = (f"import sys, json, {module}\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{SERVER_LIBRARIES!r} or m in ('mockxero.core', 'mockxero.tls', 'mockxero.app'))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert loaded == []


def test_the_package_face_still_gives_its_names() -> None:
    import mockxero

    assert mockxero.MockXero is MockXero
    assert issubclass(mockxero.ControlError, ValueError)
    with pytest.raises(AttributeError):
        _ = mockxero.NoSuchThing


def _package_imports(path: Path) -> tuple[set[str], list[str]]:
    """The package modules a module imports at its top level, and any it
    imports inside a function (a deferred import)."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    deferred: list[str] = []

    def names(node: ast.ImportFrom) -> list[str]:
        if node.level == 0 or (node.module is None and node.level != 1):
            return []
        if node.module:
            return [node.module.split(".")[0]]
        return [alias.name for alias in node.names]

    for statement in tree.body:
        if isinstance(statement, ast.ImportFrom):
            top.update(names(statement))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and names(inner):
                    deferred.append(f"{path.stem}.{node.name} imports {names(inner)}")
    return top, deferred


def test_the_package_imports_in_floors_without_circles_or_deferred_imports() -> None:
    graph: dict[str, set[str]] = {}
    deferred: list[str] = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem == "__init__":
            continue
        top, late = _package_imports(path)
        graph[path.stem] = top
        if path.stem != "cli":  # the command line loads the server only for the commands that serve
            deferred.extend(late)
    assert deferred == []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"import circle: {' -> '.join([*trail, module])}"
        state[module] = "open"
        for imported in graph.get(module, ()):
            visit(imported, [*trail, module])
        state[module] = "done"

    for module in graph:
        visit(module, [])
    # The OAuth core and the gateway's verdict never import the transport.
    assert "tls" not in graph["oauth"] and "tls" not in graph["clientcert"]
    assert {"app", "mock", "control", "flow", "api"}.isdisjoint(graph["core"])


# -- one set of operations, two faces ---------------------------------------------------------

#: Values that differ between two runs of the same call (new tokens, ids, times).
VOLATILE = {"consumer_key", "consumer_secret", "now", "offset", "certificate", "private_key", "fingerprint",
            "id", "organisation_id", "short_code", "org_muid", "oauth_verifier", "redirect", "session_handle",
            "oauth_token", "token_expires_at", "authorization_expires_at", "created_at", "expires_at", "time",
            "mock_time", "duration_ms", "ContactID", "InvoiceID", "UpdatedDateUTC", "client_certificates",
            "certificate_expires", "removed"}


def normalised(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: type(v).__name__ if k in VOLATILE else normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    return value


Setup = Callable[[MockXero, Partner], dict[str, Any]]


def fixed(**arguments: Any) -> Setup:
    return lambda xero, partner: arguments


def demo(**arguments: Any) -> Setup:
    return lambda xero, partner: {"consumer_key": xero.certs.consumer_key, **arguments}


def request_token(**arguments: Any) -> Setup:
    return lambda xero, partner: {"oauth_token": partner.get_request_token().oauth_token, **arguments}


def connected(**arguments: Any) -> Setup:
    return lambda xero, partner: {"oauth_token": partner.connect().oauth_token, **arguments}


def issued(xero: MockXero, partner: Partner) -> dict[str, Any]:
    return {"consumer_key": xero.certs.consumer_key,
            "certificate": xero.issue_client_certificate()["certificate"]}


def first_org(**arguments: Any) -> Setup:
    return lambda xero, partner: {"org": xero.organisations()[0]["short_code"], **arguments}


CASES: list[tuple[str, Setup]] = [
    ("health", fixed()),
    ("reset", fixed()), ("reset", demo()), ("reset", fixed(consumer_key="NOSUCH")),
    ("reset", fixed(consumer_key=5)),
    ("clock", fixed()), ("move_clock", fixed(advance=60)), ("move_clock", fixed(freeze=True, set=1e9)),
    ("move_clock", fixed()), ("move_clock", fixed(advance=1, set=2)), ("move_clock", fixed(set=-1)),
    ("move_clock", fixed(advance="10")), ("move_clock", fixed(advance=True)),
    ("runtime_settings", fixed()), ("change_settings", fixed(rate_limit="off", auto_approve=True)),
    ("change_settings", fixed(rate_limit="lots")), ("change_settings", fixed(auto_approve="yes")),
    ("consumers", fixed()),
    ("add_consumer", fixed(consumer_key="PARITY", name="Parity app")),
    ("add_consumer", fixed(app_type="enterprise")), ("add_consumer", fixed(client_certificates=[1])),
    ("add_consumer", fixed(name="bad\u0001name")),
    ("update_consumer", demo(name="Renamed app", callback_domain="example.com")),
    ("update_consumer", fixed(consumer_key="NOSUCH", name="x")), ("update_consumer", demo(name=5)),
    ("register_client_certificate", issued),
    ("register_client_certificate", demo(certificate="not a pem")),
    ("unregister_client_certificate", demo(fingerprint="abcdef")),
    ("issue_client_certificate", fixed()), ("issue_client_certificate", fixed(not_after="soon")),
    ("organisations", fixed()),
    ("add_organisation", fixed(name="Parity Ltd", country_code="GB", base_currency="GBP")),
    ("add_organisation", fixed(name="")), ("add_organisation", fixed(name="x", seed_data="yes")),
    ("load_data", first_org(contacts=[{"Name": "Parity Contact"}])),
    ("load_data", first_org(contacts=[{"Name": ""}])), ("load_data", fixed(org="!NOSUCH")),
    ("load_data", first_org(contacts="x")),
    ("data", first_org()), ("data", fixed(org="!NOSUCH")),
    ("authorize", request_token()), ("authorize", request_token(deny=True)),
    ("authorize", fixed(oauth_token="NOSUCH")), ("authorize", request_token(org="!NOSUCH")),
    ("authorize", fixed(deny=True)),
    ("revoke", connected()), ("revoke", fixed()), ("revoke", fixed(oauth_token="NOSUCH")),
    ("expire", connected()), ("expire", fixed(session_handle="NOSUCH")),
    ("connections", fixed()), ("connections", demo()),
    ("journal", fixed()), ("journal", fixed(since=1)),
    ("wait_for_request", fixed(timeout=0)), ("wait_for_request", fixed(timeout=-1)),
    ("wait_for_request", fixed(path="/oauth/RequestToken", timeout=1)),
    ("faults", fixed()), ("add_fault", fixed(kind="offline", path="/api.xro/2.0/*", count=2)),
    ("add_fault", fixed(kind="meteor")), ("add_fault", fixed(kind="offline", count=1.5)),
    ("clear_faults", fixed()), ("clear_fault", fixed(fault_id=999)),
    ("ca_pem", fixed()),
]


def over_http(control: Control, name: str, arguments: dict[str, Any]) -> tuple[int, Any]:
    """Call operation ``name`` through its route, laid out as the table says."""
    op = OPERATIONS[name]
    path, query, body = op.path, {}, {}
    for argument, value in arguments.items():
        field = op.fields[argument]
        if field.source == "path":
            path = path.replace(f"<{argument}>", str(value)).replace(f"<int:{argument}>", str(value))
        elif field.source == "query":
            query[argument] = value
        else:
            body[op.wire(argument)] = value
    response = control.call(op.method, path, params=query or None,
                            json=body if op.method in ("POST", "PATCH", "PUT") else None)
    if response.headers["Content-Type"].startswith("application/json"):
        return response.status_code, response.json()
    return response.status_code, response.text


def in_python(xero: MockXero, name: str, arguments: dict[str, Any]) -> tuple[int, Any]:
    op = OPERATIONS[name]
    try:
        result = getattr(xero, name)(**arguments)
    except ControlError as exc:
        return exc.status, {"error": exc.message}
    if result is None and op.none_status is not None:
        return op.none_status, {"error": "no matching request arrived in time"}
    return op.status, result


def test_every_operation_has_a_parity_case() -> None:
    assert {name for name, _ in CASES} == set(OPERATIONS)


@pytest.mark.parametrize(("name", "setup"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_each_route_and_its_python_operation_answer_alike(
        xero: MockXero, partner: Partner, control: Control, name: str, setup: Setup) -> None:
    answers = []
    for face in ("python", "http"):
        xero.reset()
        arguments = setup(xero, partner)
        answer = in_python(xero, name, arguments) if face == "python" else over_http(control, name, arguments)
        answers.append((answer[0], normalised(answer[1])))
    assert answers[0] == answers[1]


def test_mockxero_implements_the_operations_interface(xero: MockXero) -> None:
    assert isinstance(xero, Operations)
    kwargs = xero.requests_kwargs()
    assert requests.get(xero.url + "/_mockxero/health", timeout=10, **kwargs).json() == {"status": "ok"}
    assert xero.client_cert == (str(xero.certs.path("entrust-cert.pem")),
                                str(xero.certs.path("entrust-private-nopass.pem")))
