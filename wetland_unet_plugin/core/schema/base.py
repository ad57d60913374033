"""What a job's parameter is: the one declaration the CLI, Processing and the worker share.

A ``Job`` lists its ``Param``s once, with name, kind, default, bounds, choices,
help and whether they are advanced. The core CLI (``core/cli.py``) and the
Processing algorithms (``processing/parameters.py``) are generated from it;
``Job.check`` turns the values a user typed into the checked keyword
arguments of the core function, with errors that name the parameter and what
is allowed; the model file records the checked values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..feedback import CoreError

#: Input kinds that hold a path (or list of paths) to read.
PATH_KINDS = frozenset({"raster", "rasters", "vector", "layer", "file", "folder"})
#: Output kinds: a path the job writes.
OUTPUT_KINDS = frozenset({"raster_out", "file_out", "folder_out", "vector_out"})
KINDS = (
    PATH_KINDS | OUTPUT_KINDS | {"int", "float", "bool", "str", "choice", "choices", "field", "crs"}
)


@dataclass(frozen=True)
class Param:
    """One parameter of a job.

    Attributes:
        name: the public name, as in Processing and ``qgis_process`` (``TTA``).
        kind: ``int``, ``float``, ``bool``, ``str``, ``choice`` (one of ``choices``),
            ``choices`` (a list of ``choices``), ``raster``, ``rasters``, ``vector``,
            ``layer`` (a raster or a vector, as a path GDAL/OGR reads),
            ``field`` (of the ``parent`` vector), ``crs``, ``file`` (``extension``),
            ``folder``, or an output: ``raster_out``, ``file_out`` (``file_filter``),
            ``folder_out``, ``vector_out``.
        label: the dialog's label (short).
        default: the default value (None: none, or automatic where the label says so).
        help: a longer explanation for ``--help`` (the label when empty).
        minimum, maximum: bounds of numbers.
        choices: the values a user may type, in the order the dialog lists them.
        advanced: collapsed under "Advanced parameters" in the dialog.
        optional: may be left empty.
        key: the core function's keyword (default: ``name.lower()``).
        extension: file extension of ``file`` inputs (no dot).
        file_filter: the dialog's filter for ``file_out`` ("HTML files (*.html)").
        parent: the vector parameter a ``field`` belongs to.
        geometry: ``polygon`` or ``point`` for ``vector`` inputs (None: any).
        processing: offered in Processing (False: CLI and Python only).
        cli: offered on the core CLI.
        minimum_open: the minimum itself is not allowed (a number above it is).
        create: an optional output the dialog fills in by default (a temporary file).
    """

    name: str
    kind: str
    label: str
    default: object = None
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    advanced: bool = False
    optional: bool = False
    key: str = ""
    extension: str = ""
    file_filter: str = ""
    parent: str = ""
    geometry: str | None = None
    processing: bool = True
    cli: bool = True
    minimum_open: bool = False
    create: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: unknown kind {self.kind!r}")
        if not self.key:
            object.__setattr__(self, "key", self.name.lower())
        if self.kind in ("choice", "choices") and not self.choices:
            raise ValueError(f"{self.name}: a choice parameter needs choices")

    @property
    def is_output(self) -> bool:
        return self.kind in OUTPUT_KINDS

    @property
    def required(self) -> bool:
        """A value must be given (no default and not optional)."""
        return not self.optional and self.default is None

    @property
    def description(self) -> str:
        return self.help or self.label

    def allowed(self) -> str:
        """The allowed choices as a user types them: ``1, 2, 4, 8``."""
        return ", ".join(str(c) for c in self.choices)

    def parse_choice(self, value):
        """Return the choice a user typed (``"4"`` or ``4`` -> ``4``; ``True`` or ``"yes"``
        -> ``"on"`` where the choices are a switch with ``on`` and ``off``).

        Raises:
            CoreError: naming the parameter and the allowed values.
        """
        text = str(value).strip()
        if "on" in self.choices and "off" in self.choices:
            # a switch with more than two states still takes true/false for on/off
            try:
                return "on" if _as_bool(value, self.name) else "off"
            except CoreError:
                pass
        for choice in self.choices:
            if text == str(choice) or (isinstance(value, str) and text.lower() == str(choice)):
                return choice
            if isinstance(choice, int) and not isinstance(value, bool):
                try:
                    if float(text) == choice:
                        return choice
                except ValueError:
                    pass
        raise CoreError(f"{self.name} must be one of {self.allowed()} (got {value!r}).")

    def check(self, value):
        """Return ``value`` converted to this parameter's type, or its default when empty.

        Raises:
            CoreError: naming the parameter and what is allowed.
        """
        if value is None or (
            isinstance(value, str) and not value.strip() and self.kind not in ("str",)
        ):
            return self.default
        if self.kind == "int":
            return self._number(value, integer=True)
        if self.kind == "float":
            return self._number(value, integer=False)
        if self.kind == "bool":
            return _as_bool(value, self.name)
        if self.kind == "choice":
            return self.parse_choice(value)
        if self.kind == "choices":
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            return [self.parse_choice(v) for v in items if str(v).strip()]
        if self.kind == "rasters":
            return _path_list(value, self.name)
        return value

    def _number(self, value, integer: bool):
        try:
            number = int(value) if integer else float(value)
            if integer and float(value) != number:
                raise ValueError
        except (TypeError, ValueError):
            raise CoreError(
                f"{self.name} must be a {'whole ' if integer else ''}number, not {value!r}."
            ) from None
        low, high = self.minimum, self.maximum
        too_low = low is not None and (number <= low if self.minimum_open else number < low)
        if too_low or (high is not None and number > high) or not math.isfinite(number):
            bounds = ""
            if low is not None:
                bounds = f"above {low:g}" if self.minimum_open else f"at least {low:g}"
            if high is not None:
                bounds += (" and " if bounds else "") + f"at most {high:g}"
            raise CoreError(f"{self.name} must be {bounds or 'finite'} (got {value}).")
        return number


@dataclass(frozen=True)
class Output:
    """A result of a job that is not a file parameter (a number, a text, a flag)."""

    name: str
    kind: str  # "number", "string", "bool", "raster", "vector", "file"
    label: str
    key: str = ""

    def __post_init__(self):
        if not self.key:
            object.__setattr__(self, "key", self.name.lower())


@dataclass(frozen=True)
class Job:
    """A job: its Processing identity, the core function it runs, its parameters.

    Attributes:
        name: the job's name for the CLI and the worker (``train``).
        alg_id: the Processing algorithm id (``train`` in ``wetlandunet:train``).
        display_name, group_id, group, summary: the Toolbox entry.
        function: ``"module:function"`` relative to ``wetland_unet_plugin.core``.
        params: the parameters, in dialog order.
        outputs: results other than file parameters.
        in_worker: runs in the TensorFlow worker process (never in QGIS's).
    """

    name: str
    alg_id: str
    display_name: str
    group_id: str
    group: str
    summary: str
    function: str
    params: tuple
    outputs: tuple = ()
    in_worker: bool = False
    _by_name: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        for p in self.params:
            if p.name in self._by_name:
                raise ValueError(f"{self.name}: parameter {p.name} declared twice")
            self._by_name[p.name] = p

    def param(self, name: str) -> Param:
        return self._by_name[name]

    def keys(self) -> list:
        return [p.key for p in self.params]

    def defaults(self) -> dict:
        """Core keyword -> default value."""
        return {p.key: p.default for p in self.params}

    def check(self, values: dict) -> dict:
        """Checked core keyword arguments from values keyed by core keyword.

        Unknown keys are refused (a typo must not be silently ignored); missing
        ones take their defaults; required ones must be given.

        Raises:
            CoreError: naming the parameter and what is allowed.
        """
        known = {p.key: p for p in self.params}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise CoreError(
                f"Unknown parameter(s) for {self.name}: {', '.join(unknown)}. "
                f"Known: {', '.join(sorted(known))}."
            )
        out = {}
        for key, p in known.items():
            value = p.check(values.get(key))
            if value is None and p.required and not p.is_output:
                raise CoreError(f"{p.name} is required: {p.description}.")
            out[key] = value
        return out

    def record(self, values: dict) -> dict:
        """The values worth keeping in a model file or report: PARAM name -> value,
        without inputs and outputs (paths)."""
        return {
            p.name: values.get(p.key)
            for p in self.params
            if p.kind not in PATH_KINDS and not p.is_output
        }


def _as_bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise CoreError(f"{name} must be true or false (got {value!r}).")


def _path_list(value, name: str) -> list:
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        items = str(value).split(";")
    items = [v.strip() for v in items if v and str(v).strip()]
    if not items:
        raise CoreError(f"{name}: give at least one file.")
    return items
