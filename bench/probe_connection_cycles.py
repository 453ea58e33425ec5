"""Why RSS grows after many connections close: cheroot's connection holds
itself in a reference cycle, so its OpenSSL object waits for the cyclic
collector.

In-process: a MockXero, then passes of N connections that finish the TLS
handshake and close; RSS of this process (client and server) after each
pass, three ways side by side: as is, with ``gc.collect()`` after each
pass, and with the cycle broken in ``_Connection.close()`` (a monkeypatch
here, for measuring only). ``--garbage`` lists what one collection frees.

    python bench/probe_connection_cycles.py [--connections 256] [--passes 6] [--garbage]
"""

from __future__ import annotations

import argparse
import collections
import gc
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return -1.0


def break_cycle_on_close() -> None:
    import mockxero.tls as tls

    original = tls._Connection.close

    def close(self: Any) -> None:
        original(self)
        self.__dict__.pop("resolve_peer_creds", None)  # lru_cache(bound method): self -> cache -> self
        self.__dict__.pop("get_peer_creds", None)

    tls._Connection.close = close  # type: ignore[method-assign]


def run(mode: str, connections: int, passes: int, garbage: bool) -> None:
    from mockxero.mock import MockXero

    if mode == "cycle broken":
        break_cycle_on_close()
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp) / "certs"
        mock = MockXero(port=0, certs=certs).start()
        ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        ctx.load_cert_chain(str(certs / "entrust-cert.pem"), str(certs / "entrust-private-nopass.pem"))
        port = urlsplit(mock.url).port or 443
        rss = [rss_mib()]
        for _ in range(passes):
            socks = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                                     server_hostname="localhost") for _ in range(connections)]
            time.sleep(0.3)
            for sock in socks:
                sock.close()
            del socks
            time.sleep(0.5)
            if garbage:
                gc.set_debug(gc.DEBUG_SAVEALL)
                gc.collect()
                kinds = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}"
                                            for o in gc.garbage)
                print("freed by one collection:", kinds.most_common(14))
                gc.garbage.clear()
                gc.set_debug(0)
                break
            if mode == "gc.collect() after each pass":
                gc.collect()
            rss.append(rss_mib())
        mock.stop()
    if not garbage:
        print(f"{mode:30s} RSS MiB: {' -> '.join(str(r) for r in rss)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--garbage", action="store_true")
    parser.add_argument("--mode", default="")
    args = parser.parse_args()
    if args.mode or args.garbage:
        run(args.mode or "as is", args.connections, args.passes, args.garbage)
        return
    for mode in ("as is", "gc.collect() after each pass", "cycle broken"):  # each in a fresh process
        subprocess.run([sys.executable, __file__, "--mode", mode, "--connections", str(args.connections),
                        "--passes", str(args.passes)], check=True)


if __name__ == "__main__":
    main()
