# mockxero as a container: the mock Xero partner API on https://0.0.0.0:8443.
# Certificates are written at first start into the /certs volume; other
# containers mount it to read ca.pem, the client files and consumer.json.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The package pins its own dependencies (pyproject.toml); .dockerignore lets
# only the package's own files into the context, and the source is removed
# once installed. The user owns /certs so that a fresh named volume mounted
# there inherits that owner and the server can write into it.
COPY . /tmp/mockxero/
RUN pip install --no-cache-dir /tmp/mockxero \
    && rm -rf /tmp/mockxero \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin mockxero \
    && mkdir /certs \
    && chown mockxero:mockxero /certs

# glibc: two arenas and large blocks returned at once keep the resident size
# level under hostile traffic (bench/bench_hostile_memory.py).
ENV MOCKXERO_HOST=0.0.0.0 \
    MOCKXERO_PORT=8443 \
    MOCKXERO_CERTS=/certs \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072

USER 10001:10001
VOLUME ["/certs"]
EXPOSE 8443

# Healthy once the certificates are written and the listener answers over
# TLS that verifies against /certs/ca.pem (no curl in the image).
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["mockxero", "healthcheck"]

# Exec form: mockxero is PID 1 and stops cleanly on SIGTERM.
ENTRYPOINT ["mockxero"]
CMD ["serve"]
