# syntax=docker/dockerfile:1
# The audience image: the job (`audience run`/`backfill`), and the Ballista
# scheduler and executor (`audience scheduler`/`executor`, issue 7), all one binary.
# CPU-only libtorch 2.13.0 laid out from the PyPI wheel by scripts/setup-libtorch.sh.
#   docker build -t audience:dev .
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
# Built where the runtime image keeps it: build.rs embeds an rpath to libtorch/lib.
WORKDIR /opt/audience
ENV CARGO_TARGET_DIR=/opt/audience/target AUDIENCE_CACHE=/opt/audience/.cache
COPY scripts/setup-libtorch.sh scripts/
RUN PIP_BREAK_SYSTEM_PACKAGES=1 scripts/setup-libtorch.sh \
 && rm -rf /opt/audience/.cache
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo .cargo
COPY src src
RUN cargo build --release --locked --bin audience \
 && cp target/release/audience /opt/audience/audience \
 && rm -rf target

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/audience --create-home audience
COPY --from=build /opt/audience/libtorch/lib /opt/audience/libtorch/lib
COPY --from=build /opt/audience/audience /usr/local/bin/audience
COPY configs /etc/audience/examples
USER 10001:10001
WORKDIR /var/lib/audience
ENTRYPOINT ["/usr/local/bin/audience"]
CMD ["--help"]
