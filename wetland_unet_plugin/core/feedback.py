"""The one small protocol through which core reports progress and hears cancel.

Core functions take a ``feedback`` argument that has three methods:

* ``progress(fraction)``: fraction of the job done, 0.0 .. 1.0;
* ``info(text)`` (and ``warning(text)``): a line for the user's log;
* ``is_canceled()``: True once the user asked to stop.

The Processing side adapts ``QgsProcessingFeedback`` to it, the CLI prints it,
and the worker process carries it as JSON lines.
"""

from __future__ import annotations

import sys


class CoreError(Exception):
    """An error the user can act on; its message says what is wrong and what to do."""


class Canceled(CoreError):  # noqa: N818 (public name: says what happened, not a fault)
    """The user canceled the job; raised at the next batch or tile."""

    def __init__(self, message: str = "Canceled by the user."):
        super().__init__(message)


class Feedback:
    """Silent feedback: the base of every adapter, and the default in core."""

    def progress(self, fraction: float) -> None:
        """Report the fraction of the job done (0.0 .. 1.0)."""

    def info(self, text: str) -> None:
        """Report a line of information."""

    def warning(self, text: str) -> None:
        """Report a warning; defaults to info."""
        self.info("Warning: " + text)

    def is_canceled(self) -> bool:
        """Return True once the user asked to stop."""
        return False

    def check_canceled(self) -> None:
        """Raise Canceled when the user asked to stop."""
        if self.is_canceled():
            raise Canceled()


class SubFeedback(Feedback):
    """Maps progress 0..1 of a step onto [start, end] of a parent's progress."""

    def __init__(self, parent: Feedback, start: float, end: float):
        self.parent = parent
        self.start = start
        self.end = end

    def progress(self, fraction: float) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        self.parent.progress(self.start + (self.end - self.start) * fraction)

    def info(self, text: str) -> None:
        self.parent.info(text)

    def warning(self, text: str) -> None:
        self.parent.warning(text)

    def is_canceled(self) -> bool:
        return self.parent.is_canceled()


class ConsoleFeedback(Feedback):
    """Feedback for the command line: a tqdm progress bar and log lines on stderr."""

    def __init__(self, description: str = "", stream=None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._bar = None
        self._description = description

    def _get_bar(self):
        if self._bar is None and not self.quiet:
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm is optional; fall back to plain lines
                return None
            self._bar = tqdm(
                total=1000,
                desc=self._description,
                file=self.stream,
                bar_format="{l_bar}{bar}| {elapsed}<{remaining}",
            )
        return self._bar

    def progress(self, fraction: float) -> None:
        bar = self._get_bar()
        if bar is not None:
            target = int(round(min(max(fraction, 0.0), 1.0) * 1000))
            if target > bar.n:
                bar.update(target - bar.n)

    def info(self, text: str) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
