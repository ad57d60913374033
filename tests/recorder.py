"""A core Feedback that records what it is told, and cancels on request (tests only)."""

from wetland_unet_plugin.core.feedback import Feedback


class Recorder(Feedback):
    """Keeps log lines and progress fractions; cancels after ``cancel_after`` progress calls."""

    def __init__(self, cancel_after=None):
        self.lines, self.fractions = [], []
        self.cancel_after = cancel_after

    def info(self, text):
        self.lines.append(text)

    def progress(self, fraction):
        self.fractions.append(fraction)

    def is_canceled(self):
        return self.cancel_after is not None and len(self.fractions) > self.cancel_after
