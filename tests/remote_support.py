"""A ``mockxero serve`` in its own process, on its own certificate folder,
for the tests of the remote handle and of the plugin's external mode."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .cli_support import MOCKXERO, clean_env

ADMIN_TOKEN = "remote-admin-token"


@contextmanager
def serving(certs: Path, *args: str) -> Iterator[str]:
    """Run ``mockxero serve --port 0`` on ``certs`` until the block ends; the
    base URL it printed."""
    proc = subprocess.Popen([MOCKXERO, "serve", "--port", "0", "--certs", str(certs), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env())
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # the banner comes at once; a failure ends the output
            seen.append(line)
            found = re.search(r"Base URL\s+(https://\S+)", line)
            if found:
                break
        else:
            raise AssertionError(f"mockxero serve exited {proc.wait()}: {''.join(seen)}")
        # Keep reading, so that a full pipe never blocks the server's logging.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield found.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
