"""Ctrl-C during training: the first one stops the run at the next step boundary, always.

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread happens to be. Inside a
finalizer (TensorFlow runs many between steps: eager tensors, iterator and function resources)
the exception is printed as "Exception ignored in ..." and dropped, so a single Ctrl-C was
sometimes lost; inside a checkpoint write it left half-written files. Under
:func:`deferred_interrupt` the first Ctrl-C only records the request and the training loop
raises ``KeyboardInterrupt`` itself before its next step; a second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator

#: Printed on the first Ctrl-C (the loop may be in a step or a validation for a while).
FIRST_TEXT = "Ctrl-C: stopping before the next step (press Ctrl-C again to stop at once)"


class StopRequest:
    """How many Ctrl-C the process got while the context was active."""

    def __init__(self) -> None:
        self.count = 0

    @property
    def requested(self) -> bool:
        return self.count > 0


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[StopRequest]:
    """Holds Ctrl-C until the caller checks :attr:`StopRequest.requested` (see the module doc).

    Installed only where Python's own Ctrl-C handler is in place, in the main thread: a
    process that ignores SIGINT (started in the background) or an application with its own
    handler keeps its behaviour. The previous handler is restored on exit.
    """
    stop = StopRequest()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield stop
        return

    def handler(signum, frame) -> None:
        stop.count += 1
        if stop.count == 1:
            print(f"\n{FIRST_TEXT}", file=sys.stderr, flush=True)
            return
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
