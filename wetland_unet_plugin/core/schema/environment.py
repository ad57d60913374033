"""Schemas of the worker-environment jobs: ``setupworker`` and ``diagnostics``."""

from .base import Job, Output, Param

SETUP_WORKER = Job(
    name="setupworker",
    alg_id="setupworker",
    display_name="Install or repair the TensorFlow worker",
    group_id="environment",
    group="Worker environment",
    function="setup_env:setup_worker",
    summary=(
        "Builds the Python environment train and predict run in (TensorFlow never runs "
        "inside QGIS): a virtual environment made from PYTHON (default: the Python QGIS "
        "runs on) in FOLDER (default: a folder in the QGIS profile), with the plugin's "
        "pinned requirements (requirements-worker.txt) installed by pip from the package "
        "registry. DEVICE auto installs TensorFlow's CUDA build when an NVIDIA driver is "
        "found (Linux), the Metal plug-in on Apple silicon, else the CPU build. The new "
        "environment is checked by training and applying a tiny model in it, then recorded "
        "as the worker Python; it replaces the old one only then, so a failed or canceled "
        "run leaves the previous worker working. Run it again to repair or upgrade."
    ),
    params=(
        Param(
            "PYTHON",
            "file",
            "Base Python (empty: the one QGIS runs on)",
            optional=True,
            help="The interpreter the environment is made from (python.exe / python3); it "
            "must be able to run `-m venv`.",
        ),
        Param(
            "FOLDER",
            "folder",
            "Environment folder (empty: in the QGIS profile)",
            optional=True,
            help="Where the environment lives; an environment already there is replaced "
            "only once the new one works.",
        ),
        Param(
            "DEVICE",
            "choice",
            "Device",
            default="auto",
            choices=("auto", "cpu", "gpu"),
            help="auto: the CUDA build with an NVIDIA driver (Linux), Metal on Apple "
            "silicon, else the CPU build; cpu: the CPU build; gpu: the GPU build",
        ),
        Param(
            "REQUIREMENTS",
            "file",
            "Requirements file (empty: the plugin's requirements-worker.txt)",
            optional=True,
            extension="txt",
            advanced=True,
        ),
        Param(
            "PIP_OPTIONS",
            "str",
            "Extra pip options (e.g. --proxy http://host:port or --index-url URL)",
            default="",
            optional=True,
            advanced=True,
        ),
    ),
    outputs=(
        Output("WORKER_PYTHON", "string", "Worker Python"),
        Output("TENSORFLOW", "string", "TensorFlow version"),
        Output("DEVICES", "string", "Devices TensorFlow sees"),
    ),
)

#: Diagnostics report QGIS's own versions and settings: a Processing algorithm only.
DIAGNOSTICS = Job(
    name="diagnostics",
    alg_id="diagnostics",
    display_name="Check the TensorFlow worker",
    group_id="environment",
    group="Worker environment",
    function="",
    summary=(
        "Writes a report to paste into a bug report (HTML or text, by OUTPUT_REPORT's "
        "extension): QGIS and plugin versions, the worker Python and how it was chosen, the "
        "versions of Python, TensorFlow, Keras, numpy, rasterio and GDAL in the worker and "
        "in QGIS, the devices TensorFlow sees (GPU names and memory), a timed smoke test "
        "(a tiny model's train step and prediction), free disk space, and what to do when "
        "something fails."
    ),
    params=(
        Param(
            "OUTPUT_REPORT",
            "file_out",
            "Report",
            file_filter="HTML files (*.html);;Text files (*.txt)",
        ),
    ),
    outputs=(
        Output("WORKER_OK", "bool", "The worker works"),
        Output("TENSORFLOW", "string", "TensorFlow version in the worker"),
        Output("DEVICES", "string", "Devices TensorFlow sees"),
    ),
)
