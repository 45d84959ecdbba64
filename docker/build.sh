#!/usr/bin/env bash
# Builds the testbed's images without a registry, each cached by a hash of
# what goes into it:
#
#   weir-testbed-base:<hash>    Debian bookworm minbase from the Debian mirror
#                               apt on this machine uses (debootstrap, then
#                               `docker import`); its tarball is kept under
#                               ~/.cache/weir/testbed so a rebuild skips
#                               debootstrap.
#   weir-testbed:<hash>         base + a JRE, ZooKeeper, iproute2/iptables, the
#                               Hadoop client jars pyspark ships and the
#                               release `weir` binary. Every node runs it.
#   weir-testbed-client:<hash>  weir-testbed + pyspark's Spark (spark-submit).
#
# and tags the newest of each `:current`, which docker/compose.yml uses.
# Images it built before under other hashes are removed (never anything it
# did not make). Prints what it does; `weir testbed build` runs it.
#
# Environment: WEIR_TESTBED_CACHE (default ~/.cache/weir/testbed),
# CARGO_TARGET_DIR (default ~/.cache/weir/target, as scripts/test.sh),
# WEIR_BINARY (use this binary instead of building the release one).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
home="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
cache="${WEIR_TESTBED_CACHE:-$home/.cache/weir/testbed}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$home/.cache/weir/target}"
mkdir -p "$cache"

say() { echo "testbed build: $*"; }
die() { echo "testbed build: $*" >&2; exit 1; }
hash_of() { sha256sum | cut -c1-16; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
# Removes this build's images of `repo` other than tag `keep` (called after
# `current` moved to `keep`, so an older image loses its last tag here and
# goes, unless a container still uses it: then the end of the build or the
# next one removes it).
prune() {
    local repo="$1" keep="$2" tag
    for tag in $(docker image ls "$repo" --format '{{.Tag}}'); do
        case "$tag" in "$keep" | current) ;; *) say "removing the older $repo:$tag"; docker rmi "$repo:$tag" >/dev/null || true ;; esac
    done
}

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable (docker info fails)"

# ---------------------------------------------------------------- base
# The Debian mirror apt uses here (deb822 or one-line sources).
mirror="${WEIR_TESTBED_MIRROR:-}"
if [ -z "$mirror" ]; then
    mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -Eo 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"
suite=bookworm
base_packages="iproute2,procps"
base_hash="$(printf 'base v1\n%s\n%s\n%s\n' "$suite" "$mirror" "$base_packages" | hash_of)"
base="weir-testbed-base:$base_hash"
if have_image "$base"; then
    say "base image $base is built"
else
    tarball="$cache/base-$base_hash.tar"
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null || {
            say "installing debootstrap"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        }
        rootfs="$(mktemp -d "$cache/rootfs.XXXXXX")"
        trap 'rm -rf "$rootfs"' EXIT
        say "debootstrap $suite (minbase + $base_packages) from $mirror (about a minute)"
        debootstrap --variant=minbase --include="$base_packages" "$suite" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
            die "debootstrap failed; see $cache/debootstrap.log"
        # What a container never needs: package caches, lists, docs, locales.
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
        tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
        trap - EXIT
    fi
    say "docker import $tarball as $base"
    docker import --change 'CMD ["/bin/bash"]' "$tarball" "$base" >/dev/null
fi
docker tag "$base" weir-testbed-base:current
prune weir-testbed-base "$base_hash"

# ---------------------------------------------------------------- weir
if [ -n "${WEIR_BINARY:-}" ]; then
    binary="$WEIR_BINARY"
else
    say "cargo build --release --bin weir --bin weir-supervisor (target dir $CARGO_TARGET_DIR)"
    (cd "$repo" && cargo build --release --locked --bin weir --bin weir-supervisor --quiet) || die "cargo build failed"
    binary="$CARGO_TARGET_DIR/release/weir"
fi
[ -x "$binary" ] || die "no weir binary at $binary"

# pyspark's jars and scripts, from PyPI's source distribution (the version
# scripts/test.sh installs), downloaded once into the cache.
spark_tgz="$(ls -1 "$cache"/pip/pyspark-*.tar.gz 2>/dev/null | sort -V | tail -n1 || true)"
if [ -z "$spark_tgz" ]; then
    say "downloading pyspark from PyPI (about 450 MB, once)"
    mkdir -p "$cache/pip"
    python3 -m pip download --quiet --no-deps --no-binary :all: pyspark -d "$cache/pip" || die "pip download pyspark failed"
    spark_tgz="$(ls -1 "$cache"/pip/pyspark-*.tar.gz | sort -V | tail -n1)"
fi
spark_name="$(basename "$spark_tgz" .tar.gz)"
spark_dir="$cache/$spark_name"
if [ ! -d "$spark_dir/jars" ]; then
    say "unpacking $spark_name's jars and scripts"
    rm -rf "$spark_dir.tmp" && mkdir -p "$spark_dir.tmp"
    tar -xzf "$spark_tgz" -C "$spark_dir.tmp" --strip-components=2 "$spark_name/deps/jars" "$spark_name/deps/bin"
    mv "$spark_dir.tmp" "$spark_dir"
fi

# The build context: only what the image holds.
ctx="$cache/context"
rm -rf "$ctx" && mkdir -p "$ctx/hadoop-jars"
cp "$binary" "$ctx/weir"
# The small supervisor tasks run under, found next to weir (without it the
# agent falls back to `weir executor`, several times dearer per launch).
supervisor="$(dirname "$binary")/weir-supervisor"
if [ -x "$supervisor" ]; then cp "$supervisor" "$ctx/weir-supervisor"; else : > "$ctx/weir-supervisor"; fi
cp -r "$here/bin" "$here/Dockerfile" "$here/Dockerfile.client" "$ctx/"
# The Hadoop client and what its shaded jars still need at run time.
for pattern in 'hadoop-*' 'commons-*' 'guava-*' 'failureaccess-*' 'jackson-*' 'log4j-*' 'slf4j-*' 'jul-to-slf4j-*' 'stax-*' 'woodstox-*' 'jakarta.activation*' 'protobuf-java-*' 're2j-*'; do
    find "$spark_dir/jars" -maxdepth 1 -name "$pattern" -exec cp {} "$ctx/hadoop-jars/" \;
done
weir_hash="$({
    echo "weir v1 $base"
    sha256sum "$ctx/weir" | cut -d' ' -f1
    sha256sum "$ctx/weir-supervisor" | cut -d' ' -f1
    (cd "$ctx" && find bin Dockerfile hadoop-jars -type f | sort | xargs sha256sum)
} | hash_of)"
weir="weir-testbed:$weir_hash"
if have_image "$weir"; then
    say "weir image $weir is built"
else
    say "docker build $weir (JRE, ZooKeeper and tools from the Debian mirror; weir; $(ls "$ctx/hadoop-jars" | wc -l) Hadoop client jars)"
    docker build --quiet --build-arg BASE="$base" -t "$weir" -f "$ctx/Dockerfile" "$ctx" >/dev/null || die "docker build of $weir failed"
fi
docker tag "$weir" weir-testbed:current
prune weir-testbed "$weir_hash"

client_hash="$(printf 'client v1 %s %s %s\n' "$weir" "$spark_name" "$(sha256sum "$ctx/Dockerfile.client" | cut -d' ' -f1)" | hash_of)"
client="weir-testbed-client:$client_hash"
if have_image "$client"; then
    say "client image $client is built"
else
    rm -rf "$ctx/hadoop-jars" "$ctx/weir" && mkdir -p "$ctx/spark"
    cp -r "$spark_dir/jars" "$spark_dir/bin" "$ctx/spark/"
    say "docker build $client ($spark_name's Spark for spark-submit)"
    docker build --quiet --build-arg BASE="$weir" -t "$client" -f "$ctx/Dockerfile.client" "$ctx" >/dev/null || die "docker build of $client failed"
fi
docker tag "$client" weir-testbed-client:current
prune weir-testbed-client "$client_hash"
rm -rf "$ctx"
# Intermediate images a rebuild left without a tag.
dangling="$(docker image ls --filter dangling=true --filter label=weir.testbed -q)"
[ -z "$dangling" ] || docker rmi $dangling >/dev/null 2>&1 || true
say "ready: $weir (tagged weir-testbed:current), $client"
