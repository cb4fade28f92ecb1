# consultd: the same steps as README.md's first command (scripts/setup.sh, then
# `consultd serve`), on a slim official Python image. tests/test_dockerfile.py checks
# that the two agree.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    CONSULTD_HOST=0.0.0.0 CONSULTD_PORT=8080 CONSULTD_DATA_DIR=/data

WORKDIR /app
COPY . /app
# setup.sh installs nodejs/npm from Debian when missing, builds the venv and the web client.
RUN scripts/setup.sh \
    && rm -rf web_client/node_modules /root/.npm /root/.cache \
    && useradd --system --uid 10001 --home /app consultd \
    && mkdir -p /data && chown consultd /data

USER consultd
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
ENTRYPOINT [".venv/bin/consultd", "serve"]
