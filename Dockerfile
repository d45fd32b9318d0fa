# Tally: `tally-server serve` on 0.0.0.0:50051. Configure with TALLY_* variables.
FROM debian:bookworm-slim AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /src/
COPY server /src/server
COPY clients /src/clients
COPY generated /src/generated
RUN python3 -m venv /opt/tally \
 && /opt/tally/bin/pip install --no-cache-dir /src

FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/tally tally
COPY --from=build /opt/tally /opt/tally
USER tally
WORKDIR /var/lib/tally
VOLUME /var/lib/tally
ENV TALLY_LISTEN=0.0.0.0:50051 PATH=/opt/tally/bin:$PATH
EXPOSE 50051
STOPSIGNAL SIGTERM
ENTRYPOINT ["tally-server"]
CMD ["serve"]
