"""wetlandunet:evaluate - accuracy of a class map against a reference (in QGIS's process)."""

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.evaluate import evaluate_map
from .base import WetlandAlgorithm, raster_source
from .feedback import run_core


class EvaluateAlgorithm(WetlandAlgorithm):
    """Confusion matrix, overall accuracy, kappa and per-class IoU/F1 of a class map."""

    PREDICTION = "PREDICTION"
    REFERENCE = "REFERENCE"
    MODEL = "MODEL"
    CLASS_NAMES = "CLASS_NAMES"
    OUTPUT_HTML = "OUTPUT_HTML"
    OUTPUT_TABLE = "OUTPUT_TABLE"
    OVERALL_ACCURACY = "OVERALL_ACCURACY"
    KAPPA = "KAPPA"
    MEAN_IOU = "MEAN_IOU"

    ALG_ID = "evaluate"
    DISPLAY_NAME = "Evaluate class map"
    GROUP_ID = "assessment"
    GROUP = "Accuracy assessment"
    HELP = (
        "Compares a class map (ids 1..N) with a reference raster of class ids; reference "
        "pixels that are 0 or nodata are unlabelled and ignored. A reference on another grid "
        "is aligned to the map with nearest neighbour. Writes the confusion matrix (CSV, "
        "rows = reference, columns = prediction), an HTML report with a confusion-matrix "
        "figure and per-class precision, recall, F1 and IoU, and returns overall accuracy, "
        "Cohen's kappa and mean IoU. Class names come from MODEL or CLASS_NAMES.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.PREDICTION, "Class map"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE, "Reference"))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "Model (for class names)", extension="keras", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_NAMES, "Or class names (e.g. water,wetland,forest)", optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, "Report", "HTML files (*.html)", optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_TABLE, "Confusion matrix", "CSV files (*.csv)", optional=True))
        self.addOutput(QgsProcessingOutputNumber(self.OVERALL_ACCURACY, "Overall accuracy"))
        self.addOutput(QgsProcessingOutputNumber(self.KAPPA, "Cohen's kappa"))
        self.addOutput(QgsProcessingOutputNumber(self.MEAN_IOU, "Mean IoU"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        names = self.parameterAsString(parameters, self.CLASS_NAMES, context)
        html = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context) or None
        table = self.parameterAsFileOutput(parameters, self.OUTPUT_TABLE, context) or None
        result = run_core(
            evaluate_map, feedback,
            prediction=raster_source(self, parameters, self.PREDICTION, context, "class map"),
            reference=raster_source(self, parameters, self.REFERENCE, context, "reference"),
            model=self.parameterAsFile(parameters, self.MODEL, context) or None,
            class_names=names or None,
            output_html=html, output_table=table)
        return {self.OUTPUT_HTML: html, self.OUTPUT_TABLE: table,
                self.OVERALL_ACCURACY: result["overall_accuracy"], self.KAPPA: result["kappa"],
                self.MEAN_IOU: result["mean_iou"]}
