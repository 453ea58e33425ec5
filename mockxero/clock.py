"""The mock clock: the only source of "now" for anything with a lifetime
(tokens, authorisations, rate-limit windows, client-certificate validity).

It is the real clock plus an offset that tests move, optionally frozen. The
OAuth timestamp window deliberately does *not* use it: clients sign with
their real clock (SPEC.md §3.6)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

#: The clock stays within 1970..9000, where datetime and every lifetime
#: added on top of it still fit; beyond, each signed request would fail.
LATEST = 221845392000.0


class ClockError(ValueError):
    """The clock was asked to move outside the range it can hold."""


def _checked(epoch: float) -> float:
    if not 0 <= epoch <= LATEST:  # also refuses NaN
        raise ClockError(f"the mock clock must stay within 0..{int(LATEST)} epoch seconds "
                         f"(1970 to 9000), not {epoch}")
    return epoch


class MockClock:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._offset = 0.0
        self._frozen_at: float | None = None
        self._depth = 0
        #: Told (offset, frozen_at) after each move, under the clock's lock —
        #: a combined ``change`` is one move. If it raises, the move is undone.
        #: The state file uses it; None costs nothing.
        self.on_change: Callable[[float, float | None], None] | None = None

    @contextlib.contextmanager
    def _moving(self) -> Iterator[None]:
        with self._lock:
            before = (self._offset, self._frozen_at)
            self._depth += 1
            try:
                yield
                after = (self._offset, self._frozen_at)
                if self._depth == 1 and self.on_change is not None and after != before:
                    self.on_change(*after)
            except BaseException:
                self._offset, self._frozen_at = before
                raise
            finally:
                self._depth -= 1

    def restore(self, offset: float, frozen_at: float | None) -> None:
        """Where a state file says the clock was (no one is told)."""
        with self._lock:
            self._offset = offset
            self._frozen_at = frozen_at

    def now(self) -> float:
        frozen = self._frozen_at
        if frozen is not None:
            return frozen
        return time.time() + self._offset

    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), tz=timezone.utc)

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def advance(self, seconds: float) -> float:
        with self._moving():
            _checked(self.now() + seconds)
            if self._frozen_at is not None:
                self._frozen_at += seconds
            else:
                self._offset += seconds
            return self.now()

    def set(self, epoch: float) -> float:
        with self._moving():
            _checked(epoch)
            if self._frozen_at is not None:
                self._frozen_at = float(epoch)
            else:
                self._offset = float(epoch) - time.time()
            return self.now()

    def change(self, advance: float | None = None, set: float | None = None,
               freeze: bool | None = None, reset: bool = False) -> float:
        """Several moves as one, all or nothing: ``reset``, then ``freeze``
        (True freezes, False lets it run), then ``set`` or ``advance``. The
        target is checked before anything moves."""
        with self._moving():
            base = time.time() if reset else self.now()
            _checked(set if set is not None else base + (advance or 0))
            if reset:
                self.reset()
            if freeze is True:
                self.freeze()
            elif freeze is False:
                self.unfreeze()
            if advance is not None:
                self.advance(advance)
            if set is not None:
                self.set(set)
            return self.now()

    def freeze(self) -> float:
        """Stop the clock where it is; ``advance`` and ``set`` still move it."""
        with self._moving():
            if self._frozen_at is None:
                self._frozen_at = time.time() + self._offset
            return self._frozen_at

    def unfreeze(self) -> float:
        """Let the clock run again from where it stands."""
        with self._moving():
            if self._frozen_at is not None:
                self._offset = self._frozen_at - time.time()
                self._frozen_at = None
            return self.now()

    def reset(self) -> float:
        """Back on real time."""
        with self._moving():
            self._offset = 0.0
            self._frozen_at = None
            return self.now()

    def state(self) -> dict[str, float | bool]:
        return {"now": self.now(), "frozen": self.frozen, "offset": self.now() - time.time()}
