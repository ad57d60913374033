"""The algorithm every Wetland U-Net algorithm is: parameters -> core call -> outputs.

A subclass names its job's schema (``JOB``) and overrides only what is its own:
``prepare`` (checks and values that need QGIS, before any work) and ``results``
(outputs beyond the schema's files, styling). Parameters, choice checking, the
call (in QGIS's process, or in the worker for TensorFlow jobs) and error
mapping are here, once.
"""

import importlib

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputString,
    QgsProcessingOutputVectorLayer,
)

from .feedback import run_core, run_in_worker
from .parameters import check_choices, qgis_parameter, read_value
from .settings import icon

_OUTPUTS = {
    "number": QgsProcessingOutputNumber,
    "string": QgsProcessingOutputString,
    "bool": QgsProcessingOutputBoolean,
    "raster": QgsProcessingOutputRasterLayer,
    "vector": QgsProcessingOutputVectorLayer,
    "file": QgsProcessingOutputFile,
}


def core_function(job):
    """The core function a job runs (``module:function`` under wetland_unet_plugin.core)."""
    module, _, name = job.function.partition(":")
    return getattr(importlib.import_module(f"..core.{module}", __package__), name)


class WetlandAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses set ``JOB`` (a ``core.schema.Job``)."""

    JOB = None

    def name(self):
        return self.JOB.alg_id

    def displayName(self):
        return self.JOB.display_name

    def group(self):
        return self.JOB.group

    def groupId(self):
        return self.JOB.group_id

    def shortHelpString(self):
        return self.JOB.summary

    def icon(self):
        return icon()

    def createInstance(self):
        return type(self)()

    def initAlgorithm(self, config=None):
        for p in self.JOB.params:
            if p.processing:
                self.addParameter(qgis_parameter(p))
        for output in self.JOB.outputs:
            self.addOutput(_OUTPUTS[output.kind](output.name, output.label))

    def checkParameterValues(self, parameters, context):
        """Choices are checked against the values users type, with the allowed ones named."""
        fixed, message = check_choices(self.JOB, parameters)
        if message:
            return False, message
        return super().checkParameterValues(fixed, context)

    def processAlgorithm(self, parameters, context, feedback):
        values = {
            p.key: read_value(self, p, parameters, context, feedback)
            for p in self.JOB.params
            if p.processing
        }
        values = self.prepare(values, parameters, context, feedback)
        if self.JOB.in_worker:
            result = run_in_worker(self.JOB.name, feedback, **values)
        else:
            result = run_core(core_function(self.JOB), feedback, **values)
        outputs = {
            p.name: result.get(p.key, values.get(p.key))
            for p in self.JOB.params
            if p.is_output and p.processing and values.get(p.key)
        }
        outputs.update({o.name: result.get(o.key) for o in self.JOB.outputs})
        return self.results(outputs, result, values, context, feedback)

    def prepare(self, values, parameters, context, feedback):
        """Checks and values that need QGIS, before the job starts; returns the values."""
        return values

    def results(self, outputs, result, values, context, feedback):
        """The algorithm's outputs from the job's result (override to add or style)."""
        return outputs
