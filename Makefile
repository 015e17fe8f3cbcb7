# Two commands do all set-up on a fresh machine:
#   make demo   - installs everything, builds the built-in corpus and runs the main job
#   make test   - installs everything and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA_DIR ?= data

.PHONY: demo test install sysdeps clean

$(STAMP): requirements.txt setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

sysdeps:
	@bash scripts/install_sysdeps.sh

install: sysdeps $(STAMP)

# pytest exits 5 when it collects no test: that is a failure here, not a pass.
test: install
	@$(BIN)/python -m pytest -q --durations=25 tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

demo: install
	$(BIN)/audiolm-jax demo --data_dir $(DATA_DIR)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
