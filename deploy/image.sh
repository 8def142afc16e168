#!/usr/bin/env bash
# Build the prgate container image with podman, from a base made here (no registry needed).
#
#   deploy/image.sh deps              install podman, runc and debootstrap (apt-get) when missing
#   deploy/image.sh base              make the base root (debootstrap, cached tar) and import it
#   deploy/image.sh build [TAG]       deps + base + podman build deploy/Containerfile -> TAG
#   deploy/image.sh podman ARGS...    podman with this project's container settings (below)
#
# Environment (all optional):
#   PRGATE_IMAGE            tag to build (default localhost/prgate:latest)
#   PRGATE_IMAGE_EXTRAS     the package's extras in the image (default "archive tracing")
#   PRGATE_IMAGE_LEAVE_OUT  distributions of those extras left out (default "polars pandas")
#   PRGATE_CACHE            cache directory (default ~/.cache/prgate): base tar, pip cache
#   PRGATE_DEBIAN_MIRROR    Debian mirror for the base (default http://deb.debian.org/debian)
#   PRGATE_STORAGE_DRIVER   podman storage driver, e.g. vfs where overlay does not work;
#                           with PRGATE_STORAGE_ROOT to keep it apart from the default storage
#
# Container settings: podman reads containers.conf from $PRGATE_CACHE/containers.conf
# (CONTAINERS_CONF, written here; nothing under /etc is changed). It selects runc, because
# crun 1.8 (Debian 12) refuses hosts whose cgroups are mixed v1/v2, and default ulimits no
# higher than this shell's hard limits, because podman's defaults (nofile 1048576) fail where
# root lacks CAP_SYS_RESOURCE.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${PRGATE_CACHE:-$HOME/.cache/prgate}
MIRROR=${PRGATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,ca-certificates

log() { printf 'image: %s\n' "$*" >&2; }
elapsed() { printf '%ds' $(($(date +%s) - $1)); }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

cmd_deps() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || [ -x /usr/sbin/runc ] || missing+=(runc)
    command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
    [ ${#missing[@]} -eq 0 ] && return 0
    local start; start=$(date +%s)
    log "installing ${missing[*]} (apt-get)"
    command -v apt-get >/dev/null || { log "no apt-get: install ${missing[*]} yourself"; exit 1; }
    as_root apt-get update -qq
    # runc's recommends (criu, python3-protobuf) are not needed; podman's are (uidmap, ...).
    if [[ " ${missing[*]} " == *" podman "* ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        runc debootstrap >/dev/null
    log "installed in $(elapsed "$start")"
}

podman_conf() {
    mkdir -p "$CACHE"
    local nofile nproc
    nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
    [ "$nofile" = unlimited ] && nofile=1048576
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
    local conf=$CACHE/containers.conf
    cat >"$conf.$$" <<EOF
# Written by deploy/image.sh (CONTAINERS_CONF); see the comment at its top.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
EOF
    mv "$conf.$$" "$conf"  # atomic: other builds may read it at the same time
    export CONTAINERS_CONF=$conf
}

PODMAN=(podman)
setup_podman() {
    podman_conf
    if [ -n "${PRGATE_STORAGE_DRIVER:-}" ]; then
        PODMAN+=(--storage-driver "$PRGATE_STORAGE_DRIVER")
    fi
    if [ -n "${PRGATE_STORAGE_ROOT:-}" ]; then
        PODMAN+=(--root "$PRGATE_STORAGE_ROOT" --runroot "$PRGATE_STORAGE_ROOT.run")
    fi
}

# The base root. Its tar and image tag carry a key of this function's text and the month, so a
# change here or a new month (Debian's security updates) makes a new base; otherwise it is
# reused from the cache.
make_base_root() {
    local root=$1
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$root" "$MIRROR" \
        >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; return 1; }
    echo "deb ${MIRROR%/debian}/debian-security $SUITE-security main" \
        >"$root/etc/apt/sources.list.d/security.list"
    chroot "$root" apt-get update -qq >>"$root.log" 2>&1
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq >>"$root.log" 2>&1
    chroot "$root" apt-get clean
    # What no process of the image reads: package lists, docs, man pages, translations.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
        "$root"/usr/share/info/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old \
        "$root"/var/lib/dpkg/*-old "$root"/etc/resolv.conf "$root"/etc/hostname
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
}

base_key() {
    { declare -f make_base_root; echo "$SUITE $BASE_PACKAGES $MIRROR $(date -u +%Y-%m)"; } \
        | sha256sum | cut -c1-12
}

BASE_IMAGE=
cmd_base() {
    setup_podman
    local key tar start
    key=$(base_key)
    tar=$CACHE/base-$SUITE-$key.tar
    BASE_IMAGE=localhost/prgate-base:$SUITE-$key
    if [ ! -s "$tar" ]; then
        [ "$(id -u)" -eq 0 ] || { log "making the base root needs root (debootstrap, chroot)"; exit 1; }
        start=$(date +%s)
        log "making the base root (debootstrap $SUITE from $MIRROR): a few minutes, once"
        local work; work=$(mktemp -d)
        # shellcheck disable=SC2064  # expand now: $work is local
        trap "rm -rf '$work'" EXIT
        make_base_root "$work/root"
        tar --numeric-owner --xattrs -C "$work/root" -cf "$tar.$$" .
        mv "$tar.$$" "$tar"  # atomic: a concurrent build may be making the same base
        rm -rf "$work"; trap - EXIT
        find "$CACHE" -maxdepth 1 -name "base-$SUITE-*.tar" ! -name "$(basename "$tar")" -delete
        log "base root $tar ($(du -h "$tar" | cut -f1)) in $(elapsed "$start")"
    fi
    if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
        start=$(date +%s)
        "${PODMAN[@]}" import -q --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
            "$tar" "$BASE_IMAGE" >/dev/null
        log "imported $BASE_IMAGE in $(elapsed "$start")"
    fi
}

cmd_build() {
    local tag=${1:-${PRGATE_IMAGE:-localhost/prgate:latest}}
    cmd_deps
    cmd_base
    local start version volumes=()
    start=$(date +%s)
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -1)
    mkdir -p "$CACHE/image-pip"
    # Build-time mounts only, nothing of them is in the image: a pip cache, and the host's CA
    # bundle (a TLS-intercepting proxy's CA is often only there).
    volumes+=(-v "$CACHE/image-pip:/root/.cache/pip")
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        volumes+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
    fi
    log "building $tag"
    "${PODMAN[@]}" build --pull=never --network=host "${volumes[@]}" \
        --build-arg "BASE=$BASE_IMAGE" --build-arg "VERSION=$version" \
        --build-arg "EXTRAS=${PRGATE_IMAGE_EXTRAS:-archive tracing}" \
        --build-arg "LEAVE_OUT=${PRGATE_IMAGE_LEAVE_OUT-polars pandas}" \
        -f "$ROOT/deploy/Containerfile" -t "$tag" "$ROOT" >&2
    log "built $tag in $(elapsed "$start")"
}

cmd_podman() {
    setup_podman
    exec "${PODMAN[@]}" "$@"
}

case "${1:-}" in
    deps) cmd_deps ;;
    base) cmd_deps; cmd_base ;;
    build) shift; cmd_build "$@" ;;
    podman) shift; cmd_podman "$@" ;;
    *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
