"""The one core Feedback for tests: records what it is told and cancels on request."""

from wetland_unet_plugin.core.feedback import Feedback


class Recorder(Feedback):
    """Keeps log lines (warnings too), warnings apart, and progress fractions.

    Args:
        cancel_after: cancel once more than this many progress calls were made.
        cancel_on: cancel once a log line containing this text was logged.
    """

    def __init__(self, cancel_after=None, cancel_on=None):
        self.lines, self.warnings, self.fractions = [], [], []
        self.cancel_after, self.cancel_on, self.canceled = cancel_after, cancel_on, False

    def info(self, text):
        self.lines.append(text)
        if self.cancel_on and self.cancel_on in text:
            self.canceled = True

    def warning(self, text):
        """Kept apart, and in the log as the base Feedback writes it ("Warning: ...")."""
        self.warnings.append(text)
        self.info("Warning: " + text)

    def progress(self, fraction):
        self.fractions.append(fraction)

    def is_canceled(self):
        if self.cancel_after is not None and len(self.fractions) > self.cancel_after:
            self.canceled = True
        return self.canceled
