# loopwise worker image: multi-stage (wheels built once, no compilers in the runtime), non-root, pinned.
# Build: docker build -t loopwise .   Run: see infra/docker-compose.yml
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m venv /opt/loopwise
COPY pyproject.toml constraints.txt README.md ./
COPY schemas ./schemas
COPY processors ./processors
COPY models ./models
COPY sinks ./sinks
COPY streams ./streams
COPY infra ./infra
COPY scenarios ./scenarios
# Every dependency from the pinned constraints; the project itself without its dev extra.
RUN /opt/loopwise/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt .

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 loopwise \
 && useradd --system --uid 10001 --gid loopwise --home-dir /var/lib/loopwise --create-home loopwise
COPY --from=build /opt/loopwise /opt/loopwise
COPY --chown=loopwise:loopwise scenarios /opt/loopwise-scenarios
ENV PATH=/opt/loopwise/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LOOPWISE_DATA_DIR=/var/lib/loopwise \
    LOOPWISE_METRICS_PORT=9464
USER loopwise
WORKDIR /var/lib/loopwise
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["loopwise"]
CMD ["worker", "--no-apply"]
