"""Cost of one write-through transaction on a real state file, with
``synchronous=NORMAL`` (the default: survives the process being killed) side
by side with ``FULL`` (also fsyncs every commit: survives a power cut), in
the same run.

    python bench/bench_statefile.py [--writes 2000] [--rounds 3] [--dir DIR]

Each round times, per mode, ``--writes`` transactions of the shape the store
makes most: a renewal (retire the old token and update the connection, one
transaction), a new request token, and an API save of one invoice-sized
record. Then it times opening a file holding 10 000 records (the quick
check at open). Figures are microseconds per transaction, the median of the
rounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

from mockxero.statefile import ConnectionRow, RequestTokenRow, StateFile

IDENTITY = "0" * 64
RECORD = {
    "Type": "ACCREC", "InvoiceID": "", "InvoiceNumber": "INV-0001", "Reference": "",
    "Contact": {"ContactID": "8f1f1e7e-0000-4000-8000-000000000000", "Name": "Ridgeway University"},
    "Date": date(2024, 2, 29), "DueDate": date(2024, 3, 31), "Status": "AUTHORISED",
    "LineAmountTypes": "Exclusive",
    "LineItems": [{"Description": f"Line {n}", "Quantity": Decimal("1.0000"),
                   "UnitAmount": Decimal("100.00"), "TaxType": "OUTPUT2", "TaxAmount": Decimal("15.00"),
                   "LineAmount": Decimal("100.00"), "AccountCode": "200", "Tracking": []}
                  for n in range(3)],
    "SubTotal": Decimal("300.00"), "TotalTax": Decimal("45.00"), "Total": Decimal("345.00"),
    "UpdatedDateUTC": datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc), "CurrencyCode": "NZD",
}


def time_writes(folder: Path, synchronous: str, writes: int) -> dict[str, float]:
    path = folder / f"bench-{synchronous}.sqlite"
    path.unlink(missing_ok=True)
    results: dict[str, float] = {}
    with StateFile.open(path, IDENTITY, synchronous=synchronous) as sf:
        conn = ConnectionRow("CK", "org", "H", "T0", "S", 1800.0, 3e7, 0.0)
        sf.put_connection(conn)

        def renew(n: int) -> None:
            with sf.transaction():
                sf.retire_token(f"T{n}", "H", "superseded", forget=[f"T{n - 10000}"])
                conn.access_token = f"T{n + 1}"
                sf.put_connection(conn)

        def request_token(n: int) -> None:
            sf.put_request_token(RequestTokenRow(f"RT{n}", "S", "CK", "oob", 1800.0, "pending", None, None))

        def save_invoice(n: int) -> None:
            sf.put_records("org", "Invoices", {f"inv-{n}": {**RECORD, "InvoiceID": f"inv-{n}"}})

        cases: dict[str, Callable[[int], None]] = {
            "renewal": renew, "request token": request_token, "save invoice": save_invoice}
        for name, write in cases.items():
            start = time.perf_counter()
            for n in range(writes):
                write(n)
            results[name] = (time.perf_counter() - start) / writes * 1e6
    return results


def time_open(folder: Path) -> float:
    path = folder / "bench-open.sqlite"
    if not path.exists():
        with StateFile.open(path, IDENTITY) as sf:
            sf.put_records("org", "Invoices", {f"inv-{n}": {**RECORD, "InvoiceID": f"inv-{n}"}
                                               for n in range(10000)})
    start = time.perf_counter()
    with StateFile.open(path, IDENTITY) as sf:
        opened = time.perf_counter()
        sf.load()
    loaded = time.perf_counter()
    print(f"  open a 10 000-record file: {(opened - start) * 1e3:.1f} ms, "
          f"load it: {(loaded - opened) * 1e3:.0f} ms, size {path.stat().st_size / 1e6:.1f} MB")
    return opened - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to put the files (default: a temporary folder; its disk decides FULL)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        rounds: dict[str, list[dict[str, float]]] = {"NORMAL": [], "FULL": []}
        for _ in range(args.rounds):
            for mode in rounds:
                rounds[mode].append(time_writes(folder, mode, args.writes))
        print(f"µs per write transaction (median of {args.rounds} rounds of {args.writes}):")
        for name in rounds["NORMAL"][0]:
            normal = statistics.median(r[name] for r in rounds["NORMAL"])
            full = statistics.median(r[name] for r in rounds["FULL"])
            print(f"  {name:14} NORMAL {normal:8.1f}   FULL {full:8.1f}   FULL/NORMAL {full / normal:5.1f}x")
        time_open(folder)


if __name__ == "__main__":
    main()
