# routectl images, one file, two targets (no test or simulation extras in either):
#   docker build --target controller -t routectl/controller:0.1.0 .   (the default target)
#   docker build --target agent      -t routectl/agent:0.1.0 .
# The controller runs as uid 65532 on a read-only root filesystem. The agent needs iptables (both the
# nft and legacy backends; it picks the one the node already uses) and runs as uid 0 with only
# NET_ADMIN and NET_RAW granted by its DaemonSet.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY routectl ./routectl
RUN python -m venv /opt/routectl \
 && /opt/routectl/bin/pip install . \
 && /opt/routectl/bin/routectl --version

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/routectl/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/routectl /opt/routectl
ENTRYPOINT ["routectl"]

FROM runtime AS agent
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
USER 0:0
CMD ["agent"]

FROM runtime AS controller
USER 65532:65532
EXPOSE 8080
CMD ["controller"]
