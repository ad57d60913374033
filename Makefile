# Wetland U-Net. Two commands for users: `make demo` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
export QT_QPA_PLATFORM := offscreen
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test test-fast test-core demo bench bench-train bench-predict bench-quality bench-seams bench-precision zip deploy lint clean

setup:  ## install everything (Debian packages, .venv, pinned PyPI packages); idempotent
	@bash scripts/setup.sh

# Two pytest runs: core tests in a process without QGIS (they import TensorFlow, as a GPU
# node does), Processing tests with real QGIS (pytest-qgis), where TensorFlow never loads.
# They run side by side (the Processing tests mostly wait on qgis_process, the worker and
# pip): `make test` takes about 8 minutes on 2 cores instead of 11. The core run's output
# follows the Processing run's; the target fails if either run fails. $(1): pytest options.
define side_by_side
	@core_log=$$(mktemp); \
	$(PY) -m pytest tests/core -p no:pytest_qgis -q $(1) >"$$core_log" 2>&1 & core=$$!; \
	echo "tests/core: running alongside, its output follows tests/processing's"; \
	$(PY) -m pytest tests/processing -q $(1); processing_rc=$$?; \
	wait $$core; core_rc=$$?; \
	echo "--- tests/core ---"; cat "$$core_log"; rm -f "$$core_log"; \
	echo "tests/processing: exit $$processing_rc, tests/core: exit $$core_rc"; \
	[ $$processing_rc -eq 0 ] && [ $$core_rc -eq 0 ]
endef

test: setup  ## run the whole test suite headless
	$(call side_by_side,)

test-fast: setup  ## everything but the slow tests (trainings, subprocesses, QGIS desktop): under a minute
	$(call side_by_side,-m "not slow")

test-core: setup  ## only the QGIS-free core tests
	$(PY) -m pytest tests/core -p no:pytest_qgis -q

demo: setup  ## the main job on real Sentinel-2 data with OpenStreetMap labels
	$(PY) scripts/demo.py --output demo_output

bench: setup bench-train bench-predict  ## performance benchmarks (figures, not tests)

bench-train: setup
	$(PY) benchmarks/bench_train.py

bench-predict: setup
	$(PY) benchmarks/bench_predict.py

bench-quality: setup  ## U-Net vs random forest on the Aberystwyth Sentinel-2 scene
	$(PY) benchmarks/bench_quality.py

bench-seams: setup  ## tiled against one-tile prediction with the demo's trained model (make demo first)
	$(PY) benchmarks/bench_seams.py

bench-precision: setup  ## float32 vs mixed_bfloat16 on this CPU: speed, and the demo model's map (after make demo)
	$(PY) benchmarks/bench_precision.py

zip: ## installable plugin zip in dist/
	@/usr/bin/python3 scripts/package.py zip

deploy: setup  ## install into the current QGIS profile (honours QGIS_CUSTOM_CONFIG_PATH)
	$(PY) scripts/package.py deploy

lint: setup  ## ruff checks and formatting (ruff.toml); fails on any finding
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf dist build demo_output bench_output .pytest_cache
