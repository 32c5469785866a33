# Pilot Console in a container: `docker build -t pilot-console .` then see docs/console-deploy.md.
# The configuration (console.yaml, the users file, the keyring) is mounted at /config; history and
# sessions live in the /data volume (or in PostgreSQL: `database:` in console.yaml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY engine ./engine
COPY schemas ./schemas
COPY profiles ./profiles
RUN pip install ".[console,postgres]" && rm -rf /src

# its own unprivileged user: the console never runs as root, and its users file must be owned by it (0600)
RUN groupadd --system --gid 10001 pilot \
    && useradd --system --uid 10001 --gid pilot --home-dir /data --shell /usr/sbin/nologin pilot \
    && mkdir -p /data /config \
    && chown pilot:pilot /data \
    && chmod 0700 /data
USER pilot:pilot
WORKDIR /data
VOLUME ["/data"]

EXPOSE 8470
CMD ["pilot", "console", "run", "--config", "/config/console.yaml", "--state-dir", "/data", "--listen", "0.0.0.0:8470"]
