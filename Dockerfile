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

USER conduit
WORKDIR /var/lib/conduit
# Listen on every interface inside the container (the defaults are 127.0.0.1).
ENV CONDUIT_HTTP_HOST=0.0.0.0 \
    CONDUIT_SMTP_HOST=0.0.0.0
EXPOSE 8080 2525
ENTRYPOINT ["conduit"]
CMD ["serve"]
