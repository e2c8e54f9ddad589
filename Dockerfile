# pdchannels in a container: the hub (`pdchannels serve`) on port 8787, its database in the
# /data volume. See docs/deployment.md.
#
#   docker build -t pdchannels .
#   docker run -d --name pdchannels -p 127.0.0.1:8787:8787 -v pdchannels-data:/data pdchannels
#   docker logs pdchannels            # the first start prints the API token, once
#
# Stage 1 builds the binary (SQLite is compiled in: no system library at run time).
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pdchannels \
    && cp target/release/pdchannels /usr/local/bin/pdchannels

# Stage 2 is a small runtime: the binary, CA certificates (for --upstream https://...), a
# non-root user that owns the database volume.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin pdchannels \
    && mkdir -p /data && chown pdchannels:pdchannels /data && chmod 700 /data
COPY --from=builder /usr/local/bin/pdchannels /usr/local/bin/pdchannels
USER pdchannels
VOLUME ["/data"]
# Every interface of the container: publish the port on the host's loopback (as above) or put
# a TLS proxy in front (docs/deployment.md); add --allowed-host NAME for /mcp under a real name.
ENV PDCHANNELS_DB=/data/channels.db \
    PDCHANNELS_LISTEN=0.0.0.0:8787 \
    PDCHANNELS_LOG=info
EXPOSE 8787
# /healthz needs no token; bash's /dev/tcp spares installing curl.
HEALTHCHECK --interval=30s --timeout=5s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8787 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["pdchannels"]
CMD ["serve", "--listen", "0.0.0.0:8787"]
