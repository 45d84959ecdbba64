#!/usr/bin/env bash
# bench-hadoop-jobs.sh [ROUNDS]
#
# Times Hadoop 3.2.1's own jobs, submitted unchanged with `yarn jar`, on
# Hadoop's own ResourceManager + NodeManager and on `weir standalone`,
# alternating (Hadoop, Weir, Hadoop, Weir, ...) so that a busy machine
# weighs on both alike. Prints one line per run and a table of medians.
#
# Needs the peer Hadoop that /work/shared/tools/hadoop-peer.sh restores
# (HDFS running; its RM/NM are started and stopped here):
#   HADOOP_HOME  default /tmp/hadoop/hadoop-3.2.1
#   PEER_CONF    default /tmp/hadoop/conf (its yarn-site.xml: RM 18032, NM 6 GiB / 4 vcores)
#   WEIR         default the debug build in the test cache
# Everything stays on 127.0.0.1.
set -euo pipefail

rounds=${1:-2}
HADOOP_HOME=${HADOOP_HOME:-/tmp/hadoop/hadoop-3.2.1}
PEER_CONF=${PEER_CONF:-/tmp/hadoop/conf}
WEIR=${WEIR:-${HOME:-/root}/.cache/weir/target/debug/weir}
JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}
export JAVA_HOME HADOOP_HOME
export HADOOP_COMMON_HOME=$HADOOP_HOME HADOOP_HDFS_HOME=$HADOOP_HOME HADOOP_YARN_HOME=$HADOOP_HOME HADOOP_MAPRED_HOME=$HADOOP_HOME
export PATH=$HADOOP_HOME/bin:$PATH
ADD_OPENS="--add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED"
export HADOOP_OPTS="-Djava.net.preferIPv4Stack=true $ADD_OPENS"
EXAMPLES=$HADOOP_HOME/share/hadoop/mapreduce/hadoop-mapreduce-examples-3.2.1.jar
DS=$HADOOP_HOME/share/hadoop/yarn/hadoop-yarn-applications-distributedshell-3.2.1.jar
[ -x "$WEIR" ] || { echo "no weir binary at $WEIR (cargo build, or set WEIR)" >&2; exit 2; }
[ -f "$EXAMPLES" ] || { echo "no Hadoop at $HADOOP_HOME (run hadoop-peer.sh)" >&2; exit 2; }

work=$(mktemp -d /tmp/weir-bench-hadoop.XXXXXX)
results=$work/results
weir_pid=
cleanup() {
    [ -n "$weir_pid" ] && kill "$weir_pid" 2>/dev/null || true
    HADOOP_CONF_DIR=$PEER_CONF yarn --daemon stop nodemanager >/dev/null 2>&1 || true
    HADOOP_CONF_DIR=$PEER_CONF yarn --daemon stop resourcemanager >/dev/null 2>&1 || true
}
trap cleanup EXIT

say() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# Input for wordcount: 4 MB of words, once.
input=/tmp/weir-bench/wc-in
if ! HADOOP_CONF_DIR=$PEER_CONF hdfs dfs -test -e "$input/words.txt" 2>/dev/null; then
    say "writing wordcount's input to HDFS $input"
    python3 -c "
import random
r = random.Random(7); w = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu'.split()
print('\n'.join(' '.join(r.choice(w) for _ in range(10)) for _ in range(70000)))" > "$work/words.txt"
    HADOOP_CONF_DIR=$PEER_CONF hdfs dfs -mkdir -p "$input"
    HADOOP_CONF_DIR=$PEER_CONF hdfs dfs -put -f "$work/words.txt" "$input/words.txt"
fi

# One timed job: NAME CONF -- COMMAND...
timed() {
    local system=$1 name=$2 conf=$3; shift 3
    local t0 t1 rc
    t0=$(date +%s.%N)
    set +e
    HADOOP_CONF_DIR=$conf "$@" >"$work/$system-$name.log" 2>&1
    rc=$?
    set -e
    t1=$(date +%s.%N)
    local secs
    secs=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
    echo "$system $name $secs rc=$rc" | tee -a "$results"
}

jobs() {
    local system=$1 conf=$2 round=$3
    timed "$system" pi "$conf" yarn jar "$EXAMPLES" pi 2 10
    timed "$system" wordcount "$conf" yarn jar "$EXAMPLES" wordcount -D mapreduce.job.reduces=2 "$input" "/tmp/weir-bench/wc-out-$system-$round-$$"
    timed "$system" distributedshell "$conf" yarn jar "$DS" -jar "$DS" -shell_command 'echo hi' -num_containers 2
}

hadoop_round() {
    say "Hadoop's own YARN: starting RM + NM"
    HADOOP_CONF_DIR=$PEER_CONF setsid -w yarn --daemon start resourcemanager
    HADOOP_CONF_DIR=$PEER_CONF setsid -w yarn --daemon start nodemanager
    for _ in $(seq 60); do
        HADOOP_CONF_DIR=$PEER_CONF yarn node -list 2>/dev/null | grep -q RUNNING && break
        sleep 1
    done
    jobs hadoop "$PEER_CONF" "$1"
    HADOOP_CONF_DIR=$PEER_CONF yarn --daemon stop nodemanager >/dev/null 2>&1 || true
    HADOOP_CONF_DIR=$PEER_CONF yarn --daemon stop resourcemanager >/dev/null 2>&1 || true
}

weir_round() {
    say "Weir: starting weir standalone"
    local dir=$work/weir-$1 admin=$work/admin-conf
    mkdir -p "$admin"
    # The cluster's HDFS and MapReduce settings; YARN's are Weir's own.
    cp "$PEER_CONF"/core-site.xml "$PEER_CONF"/hdfs-site.xml "$PEER_CONF"/mapred-site.xml "$admin/"
    local port
    port=$(python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
    "$WEIR" standalone --work-dir "$dir" --listen 127.0.0.1:0 \
        --resources "cpus:4;mem:6144;disk:10000;ports:[$port-$((port + 1))]" \
        -D agent.listen=127.0.0.1:0 -D agent.hostname=127.0.0.1 \
        -D yarn-shim.client.address=127.0.0.1:0 -D yarn-shim.scheduler.address=127.0.0.1:0 \
        -D "yarn-shim.client.hadoop.conf.dir=$admin" >"$work/weir-$1.log" 2>&1 &
    weir_pid=$!
    for _ in $(seq 100); do
        grep -q "export HADOOP_CONF_DIR" "$work/weir-$1.log" && break
        sleep 0.2
    done
    cp "$PEER_CONF/log4j.properties" "$dir/hadoop-conf/" 2>/dev/null || true
    jobs weir "$dir/hadoop-conf" "$1"
    kill "$weir_pid"
    wait "$weir_pid" 2>/dev/null || true
    weir_pid=
}

for round in $(seq "$rounds"); do
    hadoop_round "$round"
    weir_round "$round"
done

python3 - "$results" <<'EOF'
import sys, statistics, collections
runs = collections.defaultdict(list)
failed = []
for line in open(sys.argv[1]):
    system, name, secs, rc = line.split()
    if rc != "rc=0":
        failed.append(line.strip())
    runs[(name, system)].append(float(secs))
print("\n| job | Hadoop's own YARN (s) | Weir (s) | Weir ÷ Hadoop (medians) |\n|---|---|---|---|")
for name in ("pi", "wordcount", "distributedshell"):
    h, w = runs.get((name, "hadoop"), []), runs.get((name, "weir"), [])
    if h and w:
        ratio = statistics.median(w) / statistics.median(h)
        print(f"| {name} | {', '.join(map(str, h))} | {', '.join(map(str, w))} | {ratio:.2f} |")
for f in failed:
    print("FAILED:", f)
sys.exit(1 if failed else 0)
EOF
