# syntax=docker/dockerfile:1
#
# plate-bot image: `plate-bot serve | worker | watch` plus the helm CLI the worker shells out to.
#   docker build -t plate-bot:0.1.0 .
#   docker build --build-arg HELM_VERSION=vX.Y.Z --build-arg HELM_SHA256=<sha256 of the tarball> .
# Exec credential plugins for remote clusters' kubeconfigs (EKS, AKS) are off by default; each is a
# single binary pinned by version and sha256 (docs/operations.md, "Cloud credentials"):
#   docker build --build-arg AWS_IAM_AUTHENTICATOR_VERSION=0.6.29 --build-arg AWS_IAM_AUTHENTICATOR_SHA256=<sha256> .
#   docker build --build-arg KUBELOGIN_VERSION=0.1.6 --build-arg KUBELOGIN_SHA256=<sha256 of the zip> .
# Runs as uid 10001 and writes nothing outside /tmp, so it works with readOnlyRootFilesystem.

# ---------------------------------------------------------------------------------------------------
# builder: a self-contained virtualenv at /opt/venv with plate-bot and its dependencies.
FROM python:3.11.10-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv

COPY pyproject.toml README.md ./
COPY core/ core/
COPY bot/ bot/
COPY workers/ workers/
COPY config/ config/
# Not sandbox/: the loopback fakes and the demo stay out of the production image.

# Build the project wheel, then install it (with its dependencies) into the venv.
# pip byte-compiles while installing, so nothing needs writing at runtime.
RUN /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir /wheels/*.whl \
    && test -x /opt/venv/bin/plate-bot

# ---------------------------------------------------------------------------------------------------
# helm: the pinned helm CLI, checked against its published sha256.
FROM python:3.11.10-slim-bookworm AS helm

ARG TARGETARCH=amd64
ARG HELM_VERSION=v3.16.2
# sha256 of https://get.helm.sh/helm-v3.16.2-linux-amd64.tar.gz (the .sha256sum file published next
# to it). When HELM_VERSION changes, HELM_SHA256 must change with it: the build fails otherwise.
ARG HELM_SHA256=9318379b847e333460d33d291d4c088156299a26cd93d570a7f5d0c36e50b5bb

WORKDIR /helm
# No curl/wget in the slim image: python's urllib downloads the tarball.
RUN if [ "${TARGETARCH}" != "amd64" ]; then echo "only linux/amd64 is pinned (HELM_SHA256)" >&2; exit 1; fi \
    && if [ -z "${HELM_SHA256}" ]; then echo "HELM_SHA256 build arg is required" >&2; exit 1; fi \
    && python -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" \
        "https://get.helm.sh/helm-${HELM_VERSION}-linux-amd64.tar.gz" helm.tar.gz \
    && printf '%s  %s\n' "${HELM_SHA256}" helm.tar.gz > helm.tar.gz.sha256 \
    && sha256sum -c helm.tar.gz.sha256 \
    && tar -xzf helm.tar.gz linux-amd64/helm \
    && install -m 0755 linux-amd64/helm /usr/local/bin/helm \
    && /usr/local/bin/helm version --short

# ---------------------------------------------------------------------------------------------------
# plugins: optional exec credential plugins, each downloaded only when its version is given and checked
# against its sha256 (the checksums its project publishes next to the release). None by default: the
# stage then yields an empty directory. gke-gcloud-auth-plugin is no standalone download (it ships with
# the Google Cloud CLI): build FROM this image and add it, as docs/operations.md shows.
FROM python:3.11.10-slim-bookworm AS plugins

ARG TARGETARCH=amd64
# aws-iam-authenticator (EKS; `aws eks get-token` needs the whole AWS CLI): a static binary.
# https://github.com/kubernetes-sigs/aws-iam-authenticator/releases, authenticator_<version>_checksums.txt
ARG AWS_IAM_AUTHENTICATOR_VERSION=""
ARG AWS_IAM_AUTHENTICATOR_SHA256=""
# kubelogin (AKS, Microsoft Entra ID): a zip holding one static binary.
# https://github.com/Azure/kubelogin/releases, kubelogin-linux-amd64.zip.sha256
ARG KUBELOGIN_VERSION=""
ARG KUBELOGIN_SHA256=""

WORKDIR /plugins
RUN mkdir -p /plugins/bin \
    && if [ "${TARGETARCH}" != "amd64" ]; then echo "only linux/amd64 is pinned" >&2; exit 1; fi \
    && fetch() { \
        if [ -z "$3" ]; then echo "$4 needs its sha256 build arg" >&2; return 1; fi; \
        python -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" "$1" "$2" \
        && printf '%s  %s\n' "$3" "$2" > "$2.sha256" && sha256sum -c "$2.sha256"; \
    } \
    && if [ -n "${AWS_IAM_AUTHENTICATOR_VERSION}" ]; then \
        fetch "https://github.com/kubernetes-sigs/aws-iam-authenticator/releases/download/v${AWS_IAM_AUTHENTICATOR_VERSION}/aws-iam-authenticator_${AWS_IAM_AUTHENTICATOR_VERSION}_linux_amd64" \
            aws-iam-authenticator "${AWS_IAM_AUTHENTICATOR_SHA256}" AWS_IAM_AUTHENTICATOR_VERSION \
        && install -m 0755 aws-iam-authenticator /plugins/bin/aws-iam-authenticator \
        && /plugins/bin/aws-iam-authenticator version; \
    fi \
    && if [ -n "${KUBELOGIN_VERSION}" ]; then \
        fetch "https://github.com/Azure/kubelogin/releases/download/v${KUBELOGIN_VERSION}/kubelogin-linux-amd64.zip" \
            kubelogin.zip "${KUBELOGIN_SHA256}" KUBELOGIN_VERSION \
        && python -m zipfile -e kubelogin.zip kubelogin \
        && install -m 0755 kubelogin/bin/linux_amd64/kubelogin /plugins/bin/kubelogin \
        && /plugins/bin/kubelogin --version; \
    fi

# ---------------------------------------------------------------------------------------------------
# runtime: python slim (no compilers), the venv, helm, git, the chosen plugins, non-root.
FROM python:3.11.10-slim-bookworm

LABEL org.opencontainers.image.title="plate-bot" \
      org.opencontainers.image.description="Slack ChatOps for Kubernetes: approved helm deploys, rollbacks and diagnosis" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HELM_BIN=/usr/local/bin/helm \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    XDG_DATA_HOME=/tmp/.local/share \
    HELM_CACHE_HOME=/tmp/helm/cache \
    HELM_CONFIG_HOME=/tmp/helm/config \
    HELM_DATA_HOME=/tmp/helm/data

# git: the worker clones charts of `git:` sources (config/charts.py). Pinned to bookworm's package;
# pass GIT_VERSION when Debian's security archive has moved on (apt-cache policy git).
ARG GIT_VERSION=1:2.39.5-0+deb12u3
RUN apt-get update \
    && apt-get install -y --no-install-recommends "git=${GIT_VERSION}" \
    && rm -rf /var/lib/apt/lists/* \
    && git --version

RUN groupadd --system --gid 10001 plate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin plate

COPY --from=builder /opt/venv /opt/venv
COPY --from=helm /usr/local/bin/helm /usr/local/bin/helm
COPY --from=plugins /plugins/bin/ /usr/local/bin/

# Relative paths (e.g. local data when REDIS_URL is unset) land in the writable /tmp.
WORKDIR /tmp
USER 10001:10001

EXPOSE 3000

# serve's liveness endpoint. worker/watch answer /healthz on their --metrics-port: point
# HEALTHCHECK_URL there (e.g. http://127.0.0.1:9102/healthz) when running them under Docker.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:3000/healthz'), timeout=4)"]

ENTRYPOINT ["plate-bot"]
CMD ["serve"]
