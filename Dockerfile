# The bioloupe-data code location: a Dagster gRPC code server. The webserver and the daemon run
# from Dagster's own images (the Helm chart, or `dagster-webserver` / `dagster-daemon` beside it)
# and load this server through workspace.yaml; on Kubernetes every run is a pod of this image.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BIOLOUPE_ENV=prod

WORKDIR /opt/bioloupe-data
COPY pyproject.toml README.md ./
COPY bioloupe_data ./bioloupe_data
RUN pip install . \
    && useradd --create-home --uid 10001 bioloupe
USER bioloupe

EXPOSE 4000
# The secrets (BIOLOUPE_DATABASE_URL, OPENAI_API_KEY, NCBI_API_KEY) come from the environment.
ENTRYPOINT ["dagster", "api", "grpc", "--module-name", "bioloupe_data.definitions", "--host", "0.0.0.0", "--port", "4000"]
