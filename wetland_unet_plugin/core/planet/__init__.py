"""Planet scenes as they are delivered: file naming, usable-data masks, metadata, preparation.

``naming`` (item ids, sibling files, product kind, canonical band names), ``udm``
(UDM2 and legacy UDM decoding), ``metadata`` (the XML's reflectance coefficients,
the acquisition time) and ``prepare`` (``prepare_scene``, the job
``wetlandunet:preparescene`` runs).
"""
