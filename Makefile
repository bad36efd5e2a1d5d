# Everything goes through a local virtual environment, so a fresh machine needs
# only Python >= 3.11 and make:  `make test` installs and runs the suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run search char-rnn applications parallel-in-time lint test test-all bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m experiments.jozefowicz run --preset quick

search: $(STAMP)
	$(PY) -m experiments.jozefowicz search --preset quick

char-rnn: $(STAMP)
	$(PY) -m experiments.char_rnn --preset quick

applications: $(STAMP)
	$(PY) -m experiments.gradient_flow --preset quick
	$(PY) -m experiments.addition --preset quick
	$(PY) -m experiments.sentiment --preset quick
	$(PY) -m experiments.captioning --preset quick
	$(PY) -m experiments.nnx_sentiment --preset quick

parallel-in-time: $(STAMP)
	$(PY) -m experiments.parallel_in_time --preset quick

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pyright

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

bench: $(STAMP)
	$(PY) -m benchmarks.scan --quick
	$(PY) -m benchmarks.hoist_rule
	$(PY) -m benchmarks.unroll_rule
	$(PY) -m benchmarks.levers
	$(PY) -m benchmarks.profile_ops
	$(PY) -m benchmarks.population_speed
	$(PY) -m benchmarks.search_throughput
	$(PY) -m benchmarks.parallel --steps 1000 --cells mingru,gru --hidden 8,64 --batch 1 --budget 300

clean:
	rm -rf $(VENV) build *.egg-info
