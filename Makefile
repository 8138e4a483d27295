# griddispatch: the two commands are `make run` and `make test`.
# Each target creates .venv and installs the project into it when missing (or when
# pyproject.toml changed), so a fresh clone needs nothing else.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test unit bench fuzz test-faults lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

## run: the whole engine (secure broker, topics, ACLs, workers, intake, console) with a demo feed and live summary, until Ctrl-C
run: $(STAMP)
	$(BIN)/griddispatch up --demo --prometheus --secure

## test: lint, the rule files' own checks, then unit + integration tests on real Kafka/Redis
## (the chaos suite's 3-broker cluster run is in test-faults: its setup alone takes minutes)
test: $(STAMP) lint
	$(BIN)/griddispatch rules check
	$(BIN)/griddispatch rules test
	$(BIN)/python -m pytest -m 'not cluster'

## unit: the tests that need neither Kafka nor Redis
unit: $(STAMP)
	$(BIN)/python -m pytest -m 'not integration'

## bench: benchmarks under tests/bench (figures go to bench-results/)
bench: $(STAMP)
	$(BIN)/python -m tests.bench

## test-faults: the chaos suite for FAULTS_SECONDS of load, on one broker and on a 3-broker
## cluster (make test runs the one-broker part for 30 s)
FAULTS_SECONDS ?= 300
test-faults: $(STAMP)
	GRIDDISPATCH_FAULTS_SECONDS=$(FAULTS_SECONDS) $(BIN)/python -m pytest -p no:cacheprovider \
		-s tests/integration/test_faults.py tests/integration/test_cluster_faults.py

## fuzz: every input surface fuzzed with FUZZ_EXAMPLES examples per test (CI runs 300)
FUZZ_EXAMPLES ?= 5000
fuzz: $(STAMP)
	GRIDDISPATCH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -p no:cacheprovider \
		--hypothesis-show-statistics tests/unit/test_fuzz_surfaces.py

## lint: ruff over everything, mypy --strict over engine/ and connectors/
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy engine connectors

clean:
	rm -rf $(VENV) .stack bench-results .pytest_cache .mypy_cache .ruff_cache
