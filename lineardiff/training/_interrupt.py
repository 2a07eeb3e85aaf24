"""Stop a training run at the end of a step on SIGINT / SIGTERM, so its checkpoint is current.

Without this, Ctrl-C (or a scheduler's SIGTERM) stops a run wherever it is and everything
since the last periodic checkpoint is lost; stopping between two operations of one step could
not be saved consistently either (weights updated, EMA not). The handler only records the
request; the loop finishes its step, saves, and then raises :class:`KeyboardInterrupt`. A
second signal acts at once (the previous handler is back by then).
"""

from __future__ import annotations

import signal
import threading

__all__ = ["StopRequests"]


class StopRequests:
    """Context manager: while active (and ``enabled``), SIGINT/SIGTERM set :attr:`signal`.

    Handlers can only be installed from the main thread; elsewhere (or with ``enabled``
    false) it does nothing and signals keep their usual effect.
    """

    SIGNALS = tuple(
        getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name)
    )

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        self.signal = signum
        for sig, previous in self._previous.items():  # a second signal acts at once
            signal.signal(sig, previous)

    def __enter__(self) -> StopRequests:
        if self.enabled:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
