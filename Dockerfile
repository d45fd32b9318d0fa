# Tally: `tally-server serve` on 0.0.0.0:50051. Configure with TALLY_* variables.
# Without TALLY_DATABASE_URL the data is an SQLite file on the volume /var/lib/tally.

# Build stage: a virtual environment in /opt/tally; pip, setuptools and caches stay here.
FROM debian:bookworm-slim AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/tally
# Build and run-time dependencies first, read from pyproject.toml: a change to the code
# or the README alone reuses this layer.
COPY pyproject.toml /src/
RUN python3 -c 'import tomllib; t = tomllib.load(open("/src/pyproject.toml", "rb")); print(*t["build-system"]["requires"], *t["project"]["dependencies"], sep="\n")' > /tmp/requirements.txt \
 && /opt/tally/bin/pip install -r /tmp/requirements.txt
COPY README.md /src/
COPY server /src/server
COPY clients /src/clients
COPY generated /src/generated
# The project itself, then the installers, which the server does not need at run time.
RUN /opt/tally/bin/pip install --no-deps --no-build-isolation /src \
 && /opt/tally/bin/pip uninstall -y -q pip setuptools

FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
# A fixed uid/gid, so that files on the volume stay writable by the next image's user.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tally \
 && useradd --system --no-log-init --uid 10001 --gid tally --home-dir /var/lib/tally --create-home tally
COPY --from=build /opt/tally /opt/tally
ENV PATH=/opt/tally/bin:$PATH \
    TALLY_LISTEN=0.0.0.0:50051 \
    TALLY_GRACE_SECONDS=6
USER 10001:10001
WORKDIR /var/lib/tally
VOLUME /var/lib/tally
EXPOSE 50051
# Asks grpc.health.v1 on the port TALLY_LISTEN names (on loopback when it names all addresses).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,grpc;from grpc_health.v1 import health_pb2 as h,health_pb2_grpc as g;a,_,p=os.environ['TALLY_LISTEN'].rpartition(':');a=a if a not in ('','0.0.0.0','[::]') else '127.0.0.1';r=g.HealthStub(grpc.insecure_channel(f'{a}:{p}')).Check(h.HealthCheckRequest(),timeout=4);raise SystemExit(r.status!=h.HealthCheckResponse.SERVING)"]
# tini as PID 1 passes SIGTERM on (even while the schema migrates) and reaps children; the
# server finishes calls in flight within TALLY_GRACE_SECONDS, under `docker stop`'s 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "tally-server"]
CMD ["serve"]
