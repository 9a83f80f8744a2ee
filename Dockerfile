# syntax=docker/dockerfile:1
# One image for every pipeline process of the stack (docker-compose.yml): the Dagster code server
# (default CMD), dagster-webserver, dagster-daemon, the dask scheduler and the dask workers.
# Build from the repository root:  docker build -t imagery-pipeline .

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build stage: a virtualenv with the pinned dependencies and the project ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so editing the code does not reinstall them (layer cache).
COPY requirements.lock ./
RUN pip install -r requirements.lock
# Then the project itself, without touching the pinned dependency set.
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY assets ./assets
COPY resources ./resources
RUN pip install --no-deps . \
    # Compile every module once at build time: the non-root runtime user cannot write
    # __pycache__ into the venv, and code-server/run-worker start-up pays for imports.
    && python -m compileall -q -j 0 /opt/venv

# ---- runtime stage ----
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home
RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid dagster --home-dir /opt/dagster --shell /usr/sbin/nologin dagster \
    && mkdir -p /opt/dagster/dagster_home/storage /opt/dagster/app \
    && chown -R dagster:dagster /opt/dagster
COPY --from=build /opt/venv /opt/venv
# Instance config (Postgres storage, run queue, monitoring; reads DAGSTER_PG_* at run time) and the
# workspace that points the webserver and daemon at the user-code gRPC server.
COPY dagster.yaml /opt/dagster/dagster_home/dagster.yaml
COPY docker/workspace.yaml /opt/dagster/app/docker/workspace.yaml
WORKDIR /opt/dagster/app
USER dagster:dagster
EXPOSE 4000 3000 8786
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "pipeline.definitions"]
