# dnsedge for container engines: docker build -t dnsedge:VERSION --build-arg VERSION=VERSION .
# The same image as make image builds without an engine: a static binary,
# the CA bundle, user 65532 (nonroot), entrypoint dnsedge serve.
FROM golang:1.26 AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/dnsedge ./cmd/dnsedge

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.version=${VERSION} \
      org.opencontainers.image.source=https://github.com/dnsedge/dnsedge
COPY --from=build /out/dnsedge /dnsedge
USER 65532:65532
EXPOSE 53/udp 53/tcp
ENTRYPOINT ["/dnsedge", "serve"]
