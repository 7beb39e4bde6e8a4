# Voka Bridge, headless: `voka-bridge serve` in a container (no tray app; Qt is installed as a dependency
# but never imported by `serve`). Build from the repository root:
#   docker build -t voka-bridge .
# Run (the database URL and the API key come from the environment, DESIGN section 4):
#   docker run -d --name voka-bridge -p 127.0.0.1:3000:3000 -v voka-bridge-data:/data \
#     -e DATABASE_URL=postgresql://voka@db.example:5432/shop -e MCP_API_KEY=... voka-bridge
# Try it with the bundled demo shop instead of your own database:
#   docker run --rm -p 127.0.0.1:3000:3000 voka-bridge serve --config /etc/voka-bridge/config.toml --demo
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The same pins as every other install (constraints.txt); the source tree is not kept in the image.
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY server/ server/
COPY app/ app/
COPY resources/ resources/
RUN python -m pip install --no-cache-dir -c constraints.txt . \
    && rm -rf /src

# An unprivileged user owns the data volume; nothing runs as root.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin voka \
    && mkdir /data \
    && chown voka:voka /data

# Binds 0.0.0.0 with plain HTTP, allowed explicitly there: TLS is terminated by the reverse proxy or tunnel
# in front of the container (read the file before exposing the port).
COPY deploy/docker/config.toml /etc/voka-bridge/config.toml

# VOKA_BRIDGE_HOME: tools.toml, state.sqlite3 (key hashes, audit log) and logs live in the volume.
# A container has no OS keyring: say so up front (secrets come from MCP_API_KEY / DATABASE_URL, and
# `voka-bridge keys create` shows a new key once and stores only its hash).
ENV VOKA_BRIDGE_HOME=/data \
    PYTHON_KEYRING_BACKEND=keyring.backends.fail.Keyring
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 3000

# /health answers 200 only after a real database round trip (503 when the database is unreachable).
# Port 3000: the one in /etc/voka-bridge/config.toml (change both together).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:3000/health', timeout=4).status != 200)"]

# SIGTERM (docker stop) makes `serve` finish in-flight requests and exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["voka-bridge"]
CMD ["serve", "--config", "/etc/voka-bridge/config.toml"]
