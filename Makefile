# Every target bootstraps the same virtual environment (.venv) from setup.cfg
# and the tested pins in constraints.txt, so a fresh clone needs only `make`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=
export PYTHONUNBUFFERED := 1

.DEFAULT_GOAL := help
.PHONY: help venv venv-beam test lint format train-moe train-style train-safe reproduce data-style \
        bench bench-moe bench-style bench-safe notebooks constraints clean

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the package with [dev] (pinned)

# The [beam] extra cannot share .venv (apache-beam 2.77 needs older pillow/protobuf/dateutil
# than constraints.txt pins), so the Beam pipeline's test runs it in its own .venv-beam.
BEAM_VENV  := .venv-beam
BEAM_STAMP := $(BEAM_VENV)/.installed
$(BEAM_STAMP): constraints-beam.txt
	@test -x $(BEAM_VENV)/bin/python || $(PYTHON) -m venv $(BEAM_VENV)
	$(BEAM_VENV)/bin/pip install -q -c constraints-beam.txt apache-beam chess zstandard numpy array-record tqdm tensorflow-datasets
	@touch $(BEAM_STAMP)

venv-beam: $(BEAM_STAMP)  ## .venv-beam for the Beam data pipeline (jaxstyle.chess.beam)

# $(call need,FILE,WHAT): stop with one line when a system's entry point is not built yet.
need = @test -f $(1) || { echo "make $@: $(2) is not built yet ($(1) does not exist)"; exit 1; }

lint: $(STAMP)  ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)  ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint $(BEAM_STAMP)  ## lint, the whole pytest suite, then the notebooks (nbmake)
	$(PY) -m pytest
	$(MAKE) --no-print-directory notebooks

train-moe: $(STAMP)  ## train the MoE LM (CONFIG=..., ARGS="--config.x=y")
	$(call need,experiments/train_moe.py,the jaxmoe language-model trainer)
	$(PY) -m experiments.train_moe --config $(or $(CONFIG),experiments/configs/moe.py:cpu) $(ARGS)

train-style: $(STAMP)  ## train the style-vector chess model
	$(call need,experiments/train_style.py,the jaxstyle trainer)
	$(PY) -m experiments.train_style --config $(or $(CONFIG),experiments/configs/style.py:cpu) $(ARGS)

train-safe: $(STAMP)  ## train safe-RL agents with progressive safeguards
	$(call need,experiments/train_safe.py,the jaxsafe trainer)
	XLA_FLAGS="$$($(PY) -m jaxcommon.xla_cpu)" \
	  $(PY) -m experiments.train_safe --config $(or $(CONFIG),experiments/configs/safe.py:cpu) $(ARGS)

reproduce: $(STAMP)  ## the main job: each paper's comparison at CPU scale (FULL=1: the full one)
	$(PY) -m experiments.reproduce $(if $(FULL),--full) $(ARGS)

data-style: $(STAMP)  ## build the default synthetic chess dataset once (data/synthetic, cached)
	$(PY) -m jaxstyle.chess.make_dataset --out data/synthetic $(ARGS)

bench: bench-moe bench-style bench-safe  ## all benchmarks (JSON)

bench-moe: $(STAMP)  ## MoE layer benchmark (JSON)
	$(call need,experiments/bench/moe.py,the jaxmoe benchmark)
	$(PY) -m experiments.bench.moe $(ARGS)

bench-style: $(STAMP)  ## chess data / style benchmark (JSON)
	$(call need,experiments/bench/style.py,the jaxstyle benchmark)
	$(PY) -m experiments.bench.style $(ARGS)

bench-safe: $(STAMP)  ## safeguard / environment benchmark (JSON)
	$(call need,experiments/bench/safe.py,the jaxsafe benchmark)
	$(PY) -m experiments.bench.safe $(ARGS)

notebooks: $(STAMP)  ## execute the notebooks on their small CPU path (nbmake)
	@ls experiments/notebooks/*.ipynb >/dev/null 2>&1 || { echo "make notebooks: no notebooks are built yet (experiments/notebooks/*.ipynb)"; exit 1; }
	$(PY) -m pytest --nbmake --nbmake-timeout=900 -p no:cacheprovider experiments/notebooks

constraints: $(STAMP)  ## re-pin constraints.txt to what .venv holds now
	@{ echo "# Versions tested together by CI (make test installs with -c constraints.txt). Regenerate: make constraints"; \
	   $(PY) -m pip freeze --exclude-editable | grep -v '^-e' | sort -f; } > constraints.txt

clean:  ## remove .venv, caches and build files (keeps runs/ and data/)
	rm -rf $(VENV) $(BEAM_VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
