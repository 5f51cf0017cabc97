"""Stopping a training command cleanly: Ctrl-C (SIGINT) and SIGTERM.

While a trainer is stepping it *arms* :data:`STOP`. A signal then only records a request (the
command's handler, :func:`tlkit.cli._run.resumable_signals`, calls :meth:`StopRequest.request`);
the trainer finishes the step it is in, writes a checkpoint at that step and raises
:meth:`StopRequest.exception`, so the same command resumes exactly there. A second signal, or one
outside the training steps (the data scan, the reports), stops at once, as Python's default
Ctrl-C does; what was committed before is kept either way.

This module imports nothing, so the command-line layer can install the handlers before TensorFlow
is loaded.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, like Ctrl-C's KeyboardInterrupt (exit 143)."""


class StopRequest:
    """Whether a trainer can stop at its next step boundary, and whether it was asked to."""

    def __init__(self) -> None:
        self.armed = False
        self.signum: int | None = None

    @contextlib.contextmanager
    def armed_while(self) -> Iterator[StopRequest]:
        """Arm for the duration of a block (the training steps); disarm and forget after."""
        self.armed, self.signum = True, None
        try:
            yield self
        finally:
            self.armed, self.signum = False, None

    def request(self, signum: int) -> bool:
        """Record a stop; False when it must happen at once (disarmed, or asked twice)."""
        if not self.armed or self.signum is not None:
            return False
        self.signum = signum
        return True

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def exception(self, where: str) -> KeyboardInterrupt:
        """What the trainer raises once the checkpoint at ``where`` is written."""
        if self.signum == signal.SIGTERM:
            return Terminated(f"terminated (SIGTERM) {where}")
        return KeyboardInterrupt(f"interrupted {where}")


#: The process's one stop request (signals are per process).
STOP = StopRequest()
