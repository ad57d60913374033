"""GDAL's error messages and progress callbacks, adapted to core's CoreError and Feedback.

The alignment steps call GDAL directly (gdal.Warp, gdal.RasterizeLayer, OGR),
which reports failures through its error handler and progress through a
callback. These adapters collect the messages for the CoreError a user reads,
and forward progress and cancel, without switching GDAL to exceptions for the
whole process (QGIS shares it).
"""

from __future__ import annotations


class GdalErrors:
    """Collect GDAL error messages (without switching GDAL to exceptions globally)."""

    def __enter__(self):
        from osgeo import gdal

        self.messages = []
        gdal.PushErrorHandler(self._handler)
        return self

    def _handler(self, err_class, _err_no, message):
        from osgeo import gdal

        if err_class >= gdal.CE_Failure:
            self.messages.append(str(message).strip())

    def __exit__(self, *exc):
        from osgeo import gdal

        gdal.PopErrorHandler()
        return False

    def text(self) -> str:
        """The last few error messages, for a CoreError."""
        return "; ".join(self.messages[-3:]) or "no details from GDAL"


def gdal_callback(feedback):
    """A GDAL progress callback that reports to ``feedback`` and stops on cancel."""

    def callback(complete, _message, _data):
        try:
            feedback.progress(float(complete))
        except Exception:
            pass
        return 0 if feedback.is_canceled() else 1

    return callback
