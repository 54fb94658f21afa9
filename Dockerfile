# archbot container: slim, non-root, index built at start, health on /healthz.
#   docker build -t archbot .
#   docker run --env-file .env -v archbot-data:/data -v "$PWD/docs:/docs:ro" -e ARCHBOT_DOCS=/docs archbot
# See compose.yaml for a fuller example, and README.md ("Run it in a container").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ARCHBOT_DB=/data/archbot.db \
    ARCHBOT_PORT=3000 \
    ARCHBOT_LOG_FORMAT=json

WORKDIR /app

# The source stays at /app: archbot reads its bundled knowledge/ and prompts/ from the
# project folder, so the package is installed in place (-e) rather than copied into
# site-packages without them.
COPY . /app
RUN pip install --no-cache-dir -e . \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin archbot \
    && mkdir -p /data \
    && chown archbot:archbot /data

USER 10001:10001
VOLUME ["/data"]
EXPOSE 3000

# python:3.11-slim has no curl: the health probe is a few lines of standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ARCHBOT_PORT', '3000'), timeout=4)"]

# Build or refresh the index (incremental), then hand PID 1 to the bot so SIGTERM drains it.
CMD ["sh", "-c", "archbot index --quiet && exec archbot run"]
