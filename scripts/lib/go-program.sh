# shellcheck shell=bash
# Build one Go program once: the binary is cached under a key that pins what it is built from (a
# manifest's sha256, a module version), concurrent runs wait on a lock instead of building twice,
# and a finished build is published atomically. Sourced by scripts/build-collector and
# scripts/build-jaeger, not run. The caller sets, before calling go_program_main:
#   program        the name its messages start with (build-collector)
#   binary_name    the binary's file name
#   cache_root     where its builds live: $cache_root/$cache_key/$binary_name
#   cache_key      what pins the build
#   cache_label    what a cache hit is a build of, for the message (this manifest, Jaeger v1.75.0)
#   min_go         the oldest Go that builds it, and needs_go: who needs it, for the message
#   prebuilt_var   the variable that points the tests at an existing binary instead of a build
# and defines build_program WORK OUT: build into OUT/$binary_name with $go_bin (also first on PATH),
# using the scratch folder WORK (removed afterwards); whatever else it leaves in OUT is kept beside
# the binary.

log() { printf '%s: %s\n' "$program" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Print the binary and stop if it is there already.
_go_program_hit() {
    if [[ -x $binary ]]; then
        log "$1: $binary"
        echo "$binary"
        exit 0
    fi
}

# Find Go: $GO, then PATH, then the official tarball's default location; refuse one older than
# $min_go before anything is downloaded (it would fail deep into the build, or fetch a toolchain).
_go_program_find_go() {
    go_bin=${GO:-}
    if [[ -z $go_bin ]]; then
        go_bin=$(command -v go || true)
        [[ -n $go_bin || ! -x /usr/local/go/bin/go ]] || go_bin=/usr/local/go/bin/go
    fi
    [[ -n $go_bin && -x $go_bin ]] || die "Go is not installed (no 'go' on PATH, GO unset).
Install Go >= $min_go from https://go.dev/dl/ or your distribution, or set GO=/path/to/go;
or point $prebuilt_var at an existing $binary_name binary instead of building."
    local go_version
    go_version=$("$go_bin" env GOVERSION) || die "$go_bin does not run"
    if [[ $(printf '%s\n' "go$min_go" "$go_version" | sort -V | head -n 1) != "go$min_go" ]]; then
        die "$go_bin is $go_version; $needs_go needs Go >= $min_go"
    fi
    log "using $go_bin ($go_version)"
    # Go's own tools (the Collector builder) run whatever "go" is first on PATH.
    PATH=$(dirname "$go_bin"):$PATH
    export PATH
}

go_program_main() {
    dest=$cache_root/$cache_key
    binary=$dest/$binary_name
    _go_program_hit "cached build of $cache_label"
    _go_program_find_go

    mkdir -p "$cache_root"
    # Two concurrent runs (two terminals, two CI steps) would both spend minutes; serialize them.
    exec 9>"$cache_root/.lock"
    if command -v flock >/dev/null; then
        log "waiting for the build lock" && flock 9
        _go_program_hit "built meanwhile by another run"
    fi

    # Two shared cores: cap the Go scheduler and the number of parallel compile jobs (override with
    # GOMAXPROCS on a bigger machine). GOTOOLCHAIN=local: never download another Go behind your
    # back; a release that needs a newer Go than this one fails with Go's own message.
    export GOMAXPROCS=${GOMAXPROCS:-2}
    export GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath -p=${GOMAXPROCS} -mod=mod"
    export GOTOOLCHAIN=local
    export CGO_ENABLED=0
    export GO111MODULE=on

    work=$(mktemp -d "$cache_root/.build.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/out"
    local start=$SECONDS
    build_program "$work" "$work/out"
    [[ -x $work/out/$binary_name ]] || die "the build finished but $binary_name is missing"

    # Publish atomically: a half-copied binary must never look like a cached one.
    rm -rf "$dest"
    mv "$work/out" "$dest"
    log "built in $((SECONDS - start)) s: $binary"
    echo "$binary"
}
