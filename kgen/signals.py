"""SIGINT and SIGTERM as a clean ending: ``Signals`` turns them into ``Interrupted`` (a
KeyboardInterrupt, so whatever cleans up after Ctrl-C cleans up after SIGTERM too), and
``check`` raises one whose exception Python lost.

Python runs a signal's handler in the main thread between two bytecodes, wherever it is. When that
is inside a finaliser (``__del__``) or a garbage-collector callback (JAX registers one, and is
imported on every backend), the handler's exception is printed as "Exception ignored in ..." and
dropped: the signal would be lost and a training of 500 epochs would go on. Long loops therefore
call ``check()`` at safe points (``kgen.callbacks.SignalCheck``: after every batch), which raises
the signal a still-active ``Signals`` received."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from collections.abc import Iterator
from typing import Any


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM (``signum``) while a ``Signals`` block ran; the CLI exits with 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__()  # the CLI names the signal (signum)
        self.signum = signum


_active: list[Signals] = []  # the Signals blocks running now, innermost last


class Signals:
    """While active: SIGINT and SIGTERM (or the ``signums`` given) raise ``Interrupted`` in the main
    thread. SIGTERM's default ends the process on the spot, running no ``finally``: temporary
    folders and child processes would be left behind. Only the first signal raises, so a second one
    cannot cut short the cleanup the first set off; inside ``held()`` a signal waits for the end of
    the block, so no folder is created or renamed without the bookkeeping that decides its removal.
    Signals ignored on entry (SIGINT in a background job of a script) stay ignored; the previous
    handlers come back on exit. Outside the main thread Python allows no handlers: nothing changes
    there."""

    def __init__(self, signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.signums = signums
        self.received: int | None = None
        self.raised = False
        self.holding = 0
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signums:
                handler = signal.getsignal(signum)
                if handler not in (signal.SIG_IGN, None):  # None: a handler set outside Python, left alone
                    self.previous[signum] = handler
                    signal.signal(signum, self._handle)
        _active.append(self)
        return self

    def __exit__(self, *exc_info) -> None:
        _active.remove(self)
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self._raise_pending()  # a signal held back (``held()``) is never swallowed

    def _handle(self, signum: int, frame) -> None:
        if self.received is None:
            self.received = signum
            self._raise_pending()

    def _raise_pending(self) -> None:
        if not self.raised:
            self.check()

    def check(self) -> None:
        """Raise ``Interrupted`` if a signal came, unless held: called where the block still runs,
        so an exception raised for it earlier was lost."""
        if self.received is not None and not self.holding:
            self.raised = True
            raise Interrupted(self.received)

    @contextmanager
    def held(self) -> Iterator[None]:
        """A block no signal interrupts; one that comes meanwhile is raised at its end."""
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
        self._raise_pending()


def check() -> None:
    """Raise the signal any active ``Signals`` block received (see the module's docstring)."""
    for signals in _active:
        signals.check()
