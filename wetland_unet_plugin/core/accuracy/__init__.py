"""Good-practice accuracy assessment and area estimation (Olofsson et al. 2014).

* :mod:`.estimators` - sample size, allocation and the stratified estimators (pure).
* :mod:`.mapinfo` - per-class pixel counts, pixel area and class names of a map.
* :mod:`.sampling` - ``samplepoints``: a stratified random sample as a GeoPackage.
* :mod:`.points` - labelled points read with OGR and matched to the map.
* :mod:`.assess` - ``evaluate`` with points: accuracies and areas with 95 % intervals.
* :mod:`.report` - the area table, the error matrix and the HTML report.
"""
