#!/usr/bin/env bash
# Weir's test command (the README's): installs what the tests need, then
# builds and runs every test of the workspace, unit and integration.
#
# The cargo target directory lives outside the clone by default so that
# repeated runs (CI starts from a fresh clone each time) reuse the build.
set -euo pipefail
cd "$(dirname "$0")/.."

home="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${home:-/tmp}/.cache/weir/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# No incremental caches: a whole-suite run gains little from them and they
# about double the target directory's size.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# The kept target directory grows with every change of dependencies or
# flags. When the disk under it runs short of what a whole build needs,
# the incremental caches go first, then the whole directory: a slower
# build, rather than one that dies "No space left on device" while linking.
free_kib() { df -Pk "$1" 2>/dev/null | awk 'NR==2 {print $4}'; }
mkdir -p "$CARGO_TARGET_DIR"
need_kib=$(( ${WEIR_BUILD_SPACE_GIB:-10} * 1024 * 1024 ))
if [ "$(free_kib "$CARGO_TARGET_DIR")" -lt "$need_kib" ]; then
    echo "== low disk: $(( $(free_kib "$CARGO_TARGET_DIR") / 1024 )) MiB free under $CARGO_TARGET_DIR; removing its incremental caches"
    rm -rf "$CARGO_TARGET_DIR"/*/incremental
fi
if [ "$(free_kib "$CARGO_TARGET_DIR")" -lt "$need_kib" ]; then
    echo "== low disk: $(( $(free_kib "$CARGO_TARGET_DIR") / 1024 )) MiB free; removing the kept target directory"
    rm -rf "${CARGO_TARGET_DIR:?}"/*
fi
echo "== disk: $(( $(free_kib "$CARGO_TARGET_DIR") / 1024 )) MiB free, target directory $(du -sh "$CARGO_TARGET_DIR" 2>/dev/null | cut -f1)"

# System packages the tests use. Only what is missing is installed, so a
# developer's machine is left alone once set up.
need_apt=()
command -v pkill >/dev/null 2>&1 || need_apt+=(procps)
# A real ZooKeeper server (and its Java) for the failover tests; the tests
# start it themselves on a loopback port.
[ -f /usr/share/java/zookeeper.jar ] || need_apt+=(zookeeper)
# Headless Chromium and its WebDriver for the web UI's browser test.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# A real MIT Kerberos KDC for the Kerberos tests (they start krb5kdc on
# loopback in a realm of their own), kinit/kdestroy for the client side,
# and the GSS-API library the shim loads when Kerberos is on.
[ -x /usr/sbin/krb5kdc ] || need_apt+=(krb5-kdc)
[ -x /usr/sbin/kadmin.local ] || need_apt+=(krb5-admin-server)
command -v kinit >/dev/null 2>&1 || need_apt+=(krb5-user)
[ -e /usr/lib/x86_64-linux-gnu/libgssapi_krb5.so.2 ] || [ -e /usr/lib/aarch64-linux-gnu/libgssapi_krb5.so.2 ] || need_apt+=(libgssapi-krb5-2)
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    else
        echo "scripts/test.sh: please install: ${need_apt[*]}" >&2
        exit 1
    fi
fi

# Python packages: pure-sasl is the independent DIGEST-MD5 client the
# yarn-shim's SASL server is tested against.
if command -v python3 >/dev/null 2>&1 && ! python3 -c "import puresasl" 2>/dev/null; then
    python3 -m pip install --quiet pure-sasl
fi
# pyspark brings spark-submit and the Hadoop YARN client jars the yarn
# integration test runs against the shim (it also needs Java 17+); skein is
# a YARN framework with its own Java ApplicationMaster, run unchanged.
# yarn-api-client reads the shim's REST API as Jupyter Enterprise Gateway does.
# prometheus_client's parser reads /metrics as a Prometheus scraper would;
# selenium drives Chromium in the web UI's browser test.
for module in pyspark:pyspark skein:skein yarn_api_client:yarn-api-client prometheus_client:prometheus_client selenium:selenium; do
    if command -v python3 >/dev/null 2>&1 && ! python3 -c "import ${module%%:*}" 2>/dev/null; then
        python3 -m pip install --quiet "${module#*:}"
    fi
done

echo "== cargo build (target dir: $CARGO_TARGET_DIR)"
cargo build --workspace --all-targets --locked

echo "== cargo test"
# Integration tests start real broker and agent processes; two at a time
# keeps this 2-core machine responsive enough for their timeouts. Doc
# tests are skipped: the crates have none, and their empty runs would be
# the last thing printed.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast --lib --bins --tests -- --test-threads=2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')

# The docker-compose testbed's short scenario (docker/, `weir testbed`): a
# real cluster of 12 containers with the leader killed, an agent cut off
# and an agent killed and restarted while a workload runs; the checker
# must pass. Builds the images the first time (debootstrap, a release
# build, pyspark's jars: about half an hour on a clean machine; cached
# after). Skipped, saying why, where no Docker daemon answers.
echo
echo "== testbed scenario (docker)"
if [ -n "${WEIR_SKIP_TESTBED:-}" ]; then
    echo "testbed: SKIPPED: WEIR_SKIP_TESTBED is set"
elif ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    echo "testbed: SKIPPED: no Docker daemon answers (docker info fails); the scenario needs Docker Engine and docker-compose"
elif ! command -v docker-compose >/dev/null 2>&1 && ! { [ "$(id -u)" = 0 ] && apt-get install -y -qq docker-compose >/dev/null 2>&1; }; then
    echo "testbed: SKIPPED: docker-compose is not installed (Debian: apt-get install docker-compose)"
else
    weir="$CARGO_TARGET_DIR/debug/weir"
    set +e
    "$weir" testbed scenario --ci --seed 1
    testbed_status=$?
    # Whatever happened, no container, network or volume is left behind.
    "$weir" testbed down >/dev/null 2>&1
    set -e
    if [ "$testbed_status" = 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        status=1
        echo "testbed: the scenario FAILED (its folder, printed above, holds the fault timeline and every node's log)"
    fi
fi

echo
echo "weir tests: ${passed} passed, ${failed} failed"
exit "$status"
