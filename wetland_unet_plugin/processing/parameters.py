"""Processing parameters from the job schemas (``core/schema``), and their values back.

``qgis_parameter`` turns a schema ``Param`` into its QgsProcessingParameter;
``read_value`` reads what the user gave into the value the core job takes
(file paths, WKT, numbers, the choice as typed). Choice parameters are enums
with static strings: ``TTA=4`` means four transforms.
"""

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProperty,
)

from ..core.feedback import CoreError

_GEOMETRY = {
    "polygon": QgsProcessing.TypeVectorPolygon,
    "point": QgsProcessing.TypeVectorPoint,
    None: QgsProcessing.TypeVectorAnyGeometry,
}


def _number(p, integer):
    kwargs = dict(
        type=QgsProcessingParameterNumber.Integer
        if integer
        else QgsProcessingParameterNumber.Double,
        optional=p.optional,
    )
    if p.default is not None:
        kwargs["defaultValue"] = p.default
    if p.minimum is not None:
        kwargs["minValue"] = p.minimum
    if p.maximum is not None:
        kwargs["maxValue"] = p.maximum
    return QgsProcessingParameterNumber(p.name, p.label, **kwargs)


def _enum(p):
    default = p.default if p.kind == "choice" or p.default is None else list(p.default)
    if default is not None:
        default = [str(d) for d in default] if isinstance(default, list) else str(default)
    return QgsProcessingParameterEnum(
        p.name,
        p.label,
        [str(c) for c in p.choices],
        allowMultiple=p.kind == "choices",
        defaultValue=default,
        optional=p.optional,
        usesStaticStrings=True,
    )


_BUILDERS = {
    "raster": lambda p: QgsProcessingParameterRasterLayer(p.name, p.label, optional=p.optional),
    "rasters": lambda p: QgsProcessingParameterMultipleLayers(
        p.name, p.label, QgsProcessing.TypeRaster, optional=p.optional
    ),
    "vector": lambda p: QgsProcessingParameterFeatureSource(
        p.name, p.label, [_GEOMETRY[p.geometry]], optional=p.optional
    ),
    "field": lambda p: QgsProcessingParameterField(
        p.name, p.label, parentLayerParameterName=p.parent, optional=p.optional
    ),
    "crs": lambda p: QgsProcessingParameterCrs(p.name, p.label, optional=p.optional),
    "file": lambda p: QgsProcessingParameterFile(
        p.name, p.label, extension=p.extension, optional=p.optional
    ),
    "folder": lambda p: QgsProcessingParameterFile(
        p.name, p.label, behavior=QgsProcessingParameterFile.Folder, optional=p.optional
    ),
    "int": lambda p: _number(p, True),
    "float": lambda p: _number(p, False),
    "bool": lambda p: QgsProcessingParameterBoolean(
        p.name, p.label, defaultValue=p.default, optional=p.optional
    ),
    "str": lambda p: QgsProcessingParameterString(
        p.name, p.label, defaultValue=p.default, optional=p.optional
    ),
    "choice": _enum,
    "choices": _enum,
    "raster_out": lambda p: QgsProcessingParameterRasterDestination(
        p.name, p.label, optional=p.optional, createByDefault=p.create
    ),
    "file_out": lambda p: QgsProcessingParameterFileDestination(
        p.name, p.label, p.file_filter, optional=p.optional, createByDefault=p.create
    ),
    "folder_out": lambda p: QgsProcessingParameterFolderDestination(
        p.name, p.label, optional=p.optional, createByDefault=p.create
    ),
    "vector_out": lambda p: _vector_out(p),
    "layer": lambda p: QgsProcessingParameterMapLayer(p.name, p.label, optional=p.optional),
}


def _vector_out(p):
    """A vector destination the core writes with OGR: always a file, never memory:."""
    definition = QgsProcessingParameterVectorDestination(
        p.name,
        p.label,
        QgsProcessing.TypeVectorAnyGeometry,
        optional=p.optional,
        createByDefault=p.create,
    )
    definition.setSupportsNonFileBasedOutput(False)
    return definition


def qgis_parameter(p) -> QgsProcessingParameterDefinition:
    """The QgsProcessingParameter of a schema parameter (flagged advanced, with help)."""
    definition = _BUILDERS[p.kind](p)
    if p.advanced:
        definition.setFlags(definition.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    if p.help:
        definition.setHelp(p.help)
    return definition


def _empty(value) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def raster_path(algorithm, parameters, p, context):
    """The file path of a raster parameter, or None when optional and unset.

    Raises:
        QgsProcessingException: when it is not a raster GDAL can read from a file.
    """
    value = parameters.get(p.name)
    if _empty(value):
        if not p.optional:
            raise QgsProcessingException(
                f"{p.name}: no {p.label.lower()} given; choose a raster layer."
            )
        return None
    layer = algorithm.parameterAsRasterLayer(parameters, p.name, context)
    return _file_raster(layer, p, value)


def _file_raster(layer, p, value):
    if layer is None or not layer.isValid():
        raise QgsProcessingException(
            f"{p.name}: '{value}' is not a raster layer QGIS can "
            f"open; choose a GeoTIFF or another GDAL raster."
        )
    if layer.providerType() != "gdal":
        raise QgsProcessingException(
            f"{p.name}: '{layer.name()}' comes from the "
            f"'{layer.providerType()}' provider; save it as a GeoTIFF "
            "first (Export > Save As)."
        )
    return layer.source()


def _rasters(algorithm, parameters, p, context):
    layers = algorithm.parameterAsLayerList(parameters, p.name, context)
    if not layers:
        if p.optional:
            return None
        raise QgsProcessingException(f"{p.name}: give at least one raster layer.")
    return [_file_raster(layer, p, layer.name()) for layer in layers]


def _vector(algorithm, parameters, p, context, feedback):
    """A vector input as a path GDAL/OGR reads ('file.gpkg|layername=x' when needed)."""
    value = parameters.get(p.name)
    if _empty(value):
        return None
    if algorithm.parameterAsSource(parameters, p.name, context) is None:
        raise QgsProcessingException(
            f"{p.name}: '{value}' is not a vector layer QGIS can "
            "open; choose a layer of the kind the label says."
        )
    path, layer = algorithm.parameterAsCompatibleSourceLayerPathAndLayerName(
        parameters, p.name, context, ["gpkg", "shp", "geojson"], "gpkg", feedback
    )
    return f"{path}|layername={layer}" if layer else path


def _layer(algorithm, parameters, p, context):
    """A raster or vector layer as a path GDAL/OGR reads ('file.gpkg|layername=x')."""
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    value = parameters.get(p.name)
    if _empty(value):
        return None
    layer = algorithm.parameterAsLayer(parameters, p.name, context)
    if isinstance(layer, QgsRasterLayer):
        return _file_raster(layer, p, value)
    if not isinstance(layer, QgsVectorLayer) or not layer.isValid():
        raise QgsProcessingException(
            f"{p.name}: '{value}' is not a layer QGIS can open; choose a raster or a "
            "point layer (GeoPackage, Shapefile)."
        )
    if layer.providerType() != "ogr":
        raise QgsProcessingException(
            f"{p.name}: '{layer.name()}' comes from the '{layer.providerType()}' provider; "
            "save it as a GeoPackage first (Export > Save Features As)."
        )
    return layer.source()


def _choice(algorithm, parameters, p, context):
    value = parameters.get(p.name)
    if isinstance(value, QgsProperty):
        value = (
            algorithm.parameterAsEnumStrings
            if p.kind == "choices"
            else algorithm.parameterAsEnumString
        )(parameters, p.name, context)
    if _empty(value) or value == []:
        return p.default
    try:
        if p.kind == "choices":
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            return [p.parse_choice(v) for v in items if str(v).strip()]
        return p.parse_choice(value)
    except CoreError as err:
        raise QgsProcessingException(str(err)) from None


def _optional_text(text, p):
    return None if text == "" and p.default is None else text


def read_value(algorithm, p, parameters, context, feedback):
    """The value of schema parameter ``p`` as the core job takes it."""
    value = parameters.get(p.name)
    kind = p.kind
    if kind == "raster":
        return raster_path(algorithm, parameters, p, context)
    if kind == "rasters":
        return _rasters(algorithm, parameters, p, context)
    if kind == "vector":
        return _vector(algorithm, parameters, p, context, feedback)
    if kind == "layer":
        return _layer(algorithm, parameters, p, context)
    if kind in ("choice", "choices"):
        return _choice(algorithm, parameters, p, context)
    if kind == "crs":
        crs = algorithm.parameterAsCrs(parameters, p.name, context)
        return crs.toWkt() if crs is not None and crs.isValid() else None
    if kind in ("int", "float") and _empty(value) and p.default is None:
        return None
    if kind == "int":
        return algorithm.parameterAsInt(parameters, p.name, context)
    if kind == "float":
        return algorithm.parameterAsDouble(parameters, p.name, context)
    if kind == "bool":
        return algorithm.parameterAsBoolean(parameters, p.name, context)
    if kind in ("str", "field"):
        return _optional_text(algorithm.parameterAsString(parameters, p.name, context), p)
    if kind in ("file", "folder"):
        return algorithm.parameterAsFile(parameters, p.name, context) or None
    if kind in ("raster_out", "vector_out"):
        return algorithm.parameterAsOutputLayer(parameters, p.name, context) or None
    if kind == "file_out":
        return algorithm.parameterAsFileOutput(parameters, p.name, context) or None
    if kind == "folder_out":
        return algorithm.parameterAsString(parameters, p.name, context) or None
    raise ValueError(f"unknown kind {kind}")


def check_choices(job, parameters):
    """Check the choice parameters a user typed; return (parameters with choices as their
    static strings, None) or (None, a message naming the allowed values)."""
    fixed = dict(parameters)
    for p in job.params:
        value = parameters.get(p.name)
        if (
            not p.processing
            or p.kind not in ("choice", "choices")
            or _empty(value)
            or isinstance(value, QgsProperty)
        ):
            continue
        try:
            if p.kind == "choices":
                items = value if isinstance(value, (list, tuple)) else str(value).split(",")
                fixed[p.name] = [str(p.parse_choice(v)) for v in items if str(v).strip()]
            else:
                fixed[p.name] = str(p.parse_choice(value))
        except CoreError as err:
            return None, str(err)
    return fixed, None
