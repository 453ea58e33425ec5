"""The pytest plugin against pytest-httpserver: session start-up and the
cost per test, the way a user's suite pays them.

Three generated test files, each run by pytest in its own process:

* ``httpserver``: pytest-httpserver's fixture, one canned response fetched
  with requests (the baseline: a plain-HTTP stub);
* ``mockxero``: the plugin's reset-per-test handle, one control call;
* ``xero_client``: a ``PartnerClient`` already through the dance, one
  signed ``GET Organisation``.

Start-up is a one-test run's wall time (best of ``--repeat``). The cost
per test is the median, over the N tests of a run, of each test's whole
run protocol (setup, call, teardown, report), timed by a hook in the
generated conftest.py: collection and assertion rewriting, which grow with
the file and not with the fixture, stay out. Hypothesis' pytest plugin is
switched off: the test tools install it here, a user's suite would not,
and it loads for a second. Needs ``pip install -e '.[test,bench]'``.

    python bench/bench_pytest_plugin.py [--tests 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from _common import machine, print_table

BODIES = {
    "httpserver": (
        "import requests\n\n"
        "def test_{i}(httpserver):\n"
        "    httpserver.expect_request('/ping').respond_with_data('pong')\n"
        "    assert requests.get(httpserver.url_for('/ping'), timeout=5).text == 'pong'\n"
    ),
    "mockxero": (
        "def test_{i}(mockxero):\n"
        "    assert mockxero.journal() == []\n"
    ),
    "xero_client": (
        "def test_{i}(xero_client):\n"
        "    assert xero_client.get('Organisation')\n"
    ),
}


#: Times each test's run protocol into times.json.
CONFTEST = """
import json, time
import pytest

TIMES = []

@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        TIMES.append(time.perf_counter() - start)

def pytest_sessionfinish(session):
    with open("times.json", "w") as out:
        json.dump(TIMES, out)
"""


def plugin_installed() -> bool:
    return any("mockxero" in (ep.value or "") for ep in metadata.entry_points(group="pytest11"))


def run(folder: Path, name: str, count: int) -> tuple[float, list[float]]:
    """Wall seconds of the whole run, and each test's setup + call + teardown."""
    path = folder / f"test_{name}_{count}.py"
    path.write_text("\n\n".join(BODIES[name].format(i=i) for i in range(count)))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:hypothesispytest", str(path)],
                          cwd=folder, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name}: pytest failed\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    times: list[float] = json.loads((folder / "times.json").read_text())
    return elapsed, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    names = ["httpserver"]
    if plugin_installed():
        names += ["mockxero", "xero_client"]
    else:
        print("(the mockxero pytest plugin is not installed yet: only the baseline is measured)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "conftest.py").write_text(CONFTEST)
        for name in names:
            one = min(run(folder, name, 1)[0] for _ in range(args.repeat))
            tests = run(folder, name, args.tests)[1]
            rows.append((name, f"{one * 1000:.0f}", f"{statistics.median(tests) * 1000:.2f}",
                         f"{min(tests) * 1000:.2f}"))
    print(f"session: best of {args.repeat} one-test runs; per test: over {args.tests} tests")
    print_table(["fixture", "session with one test, ms", "per test median ms", "per test min ms"], rows)


if __name__ == "__main__":
    main()
