# The worker image: the package, its runtime dependencies and the committed ONNX models.
# No torch, no Kafka jars (the broker is its own container in docker-compose.yml).
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY schemas ./schemas
COPY models_onnx ./models_onnx
RUN pip install --no-cache-dir . \
    && useradd --create-home signals \
    && mkdir -p /app/.kafka && chown signals /app/.kafka
USER signals
# Installed as a regular (non-editable) package, so point the worker at the copied folders.
ENV SIGNALS_MODELS_DIR=/app/models_onnx \
    SIGNALS_SCHEMAS_DIR=/app/schemas \
    SIGNALS_WORKER_DATA_DIR=/app/.kafka/worker
EXPOSE 9180
ENTRYPOINT ["signals"]
CMD ["worker"]
