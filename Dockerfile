# One image for the operator, the monitoring sidecar and the CLI.
#   docker build -t ghcr.io/vigil-dev/vigil:0.1.0 .     (or: make image)
#   hack/build-images.sh vigil   (no registry: vigil.local/vigil, local Python base)
# Entry points: vigil-operator (default), vigil-sidecar, vigil-fetch (the model
# artifact init container), vigil / kubectl-vigil.
# Non-root (65532), no shell needed at run time, read-only root file system
# friendly (no writes outside mounted volumes), dependencies pinned in
# hack/image/requirements.txt.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
# The build stage's image: the same by default. A build without a registry
# (hack/build-images.sh) passes its local base plus wheels fetched beforehand,
# so pip needs no network here and no build secret reaches a layer.
ARG BUILD_IMAGE=${PYTHON_IMAGE}

FROM ${BUILD_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY hack/image/requirements.txt /src/requirements.txt
RUN pip install --prefix=/install --no-deps -r requirements.txt
COPY pyproject.toml README.md /src/
COPY operator /src/operator
RUN pip install --prefix=/install --no-deps /src

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="vigil" \
      org.opencontainers.image.description="Kubernetes operator that rolls out ML models safely and watches them" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TMPDIR=/var/lib/vigil/tmp
COPY --from=build /install /usr/local
# Drop the development-only local cluster tooling from the shipped image.
RUN rm -rf /usr/local/lib/python3.11/site-packages/vigil/devcluster \
    && python -c "import vigil.operator.main, vigil.sidecar.main, vigil.fetch.main, vigil.cli"
USER 65532:65532
EXPOSE 8000 9090 8080
ENTRYPOINT ["vigil-operator"]
