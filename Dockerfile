# Conduit: one image for every role. The command picks the role:
#   conduit migrate | conduit api | conduit smtp | conduit worker | conduit serve
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --home-dir /var/lib/conduit --create-home --shell /usr/sbin/nologin conduit

WORKDIR /src
COPY pyproject.toml README.md ./
COPY conduit ./conduit
RUN pip install . && rm -rf /src

# `conduit serve`'s SQLite database (with its WAL files and the generated secret key beside it)
# lives in a volume, so it outlives the container. PostgreSQL deployments set their own URL.
RUN mkdir /var/lib/conduit/data && chown conduit:conduit /var/lib/conduit/data
VOLUME /var/lib/conduit/data

USER conduit
WORKDIR /var/lib/conduit
# Listen on every interface inside the container (the defaults are 127.0.0.1).
ENV CONDUIT_HTTP_HOST=0.0.0.0 \
    CONDUIT_SMTP_HOST=0.0.0.0 \
    CONDUIT_DATABASE_URL=sqlite+aiosqlite:////var/lib/conduit/data/conduit.db
# 9090: /metrics and /health/* of the roles without an API, when CONDUIT_METRICS_PORT=9090.
EXPOSE 8080 2525 9090
# Healthy when the role is ready: its database answers and has this version's schema. Asked on
# CONDUIT_METRICS_PORT when set (smtp, worker), else on the API port (serve, api).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; p = os.environ.get('CONDUIT_METRICS_PORT', '0'); p = p if p != '0' else os.environ.get('CONDUIT_HTTP_PORT', '8080'); urllib.request.urlopen('http://127.0.0.1:' + p + '/health/ready', timeout=3)"]
ENTRYPOINT ["conduit"]
CMD ["serve"]
