#!/usr/bin/env bash
# Times the same PySpark π job (client mode, 2 executors × 1 core × 512 MiB)
# on Weir (weir standalone, through the YARN shim) and on Spark's own
# standalone cluster manager (Master + Worker shipped in pyspark), on this
# machine, loopback only. Prints one summary line per manager and a ratio.
#
#   scripts/bench-spark-pi.sh [RUNS] [SLICES]
#
# Needs: Java 17+, pip install pyspark, a built weir (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
slices="${2:-8}"
home="${HOME:-/tmp}"
target="${CARGO_TARGET_DIR:-$home/.cache/weir/target}"
weir="$target/release/weir"
[ -x "$weir" ] || { echo "build weir first: cargo build --release --bin weir" >&2; exit 2; }
spark_home="$(python3 -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
python="$(python3 -c 'import sys; print(sys.executable)')"
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 1
    pkill -f "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/pi.py" <<'PY'
import sys
from random import random
from operator import add
from pyspark.sql import SparkSession
slices = int(sys.argv[1])
spark = SparkSession.builder.appName("bench-pi").getOrCreate()
n = 200000 * slices
def inside(_):
    x = random() * 2 - 1
    y = random() * 2 - 1
    return 1 if x * x + y * y <= 1 else 0
count = spark.sparkContext.parallelize(range(1, n + 1), slices).map(inside).reduce(add)
print("Pi is roughly %f" % (4.0 * count / n))
spark.stop()
PY

export SPARK_HOME="$spark_home" SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON="$python"
common=(--deploy-mode client --conf spark.executor.instances=2 --conf spark.executor.cores=1
        --conf spark.executor.memory=512m --conf spark.driver.memory=512m --conf spark.cores.max=2
        --conf spark.ui.enabled=false --conf "spark.pyspark.python=$python")

# Wall-clock seconds of one spark-submit; fails the script if π is missing.
time_one() {
    local start end out
    start=$(date +%s.%N)
    out="$("$spark_home/bin/spark-submit" "$@" "$work/pi.py" "$slices" 2>"$work/last.err")"
    end=$(date +%s.%N)
    grep -q "Pi is roughly" <<<"$out" || { cat "$work/last.err" >&2; echo "no π printed" >&2; exit 1; }
    awk -v a="$end" -v b="$start" 'BEGIN { printf "%.2f\n", a - b }'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# --- Weir
"$weir" standalone --work-dir "$work/weir" --listen 127.0.0.1:0 \
    --resources "cpus:4;mem:6144;disk:1000;ports:[31000-31100]" \
    -D agent.listen=127.0.0.1:0 -D agent.hostname=127.0.0.1 \
    -D yarn-shim.client.address=127.0.0.1:0 -D yarn-shim.scheduler.address=127.0.0.1:0 \
    >"$work/weir.out" 2>"$work/weir.err" &
pids+=($!)
for _ in $(seq 100); do [ -f "$work/weir/hadoop-conf/yarn-site.xml" ] && break; sleep 0.2; done
export HADOOP_CONF_DIR="$work/weir/hadoop-conf"
weir_times=()
for i in $(seq "$runs"); do
    t=$(time_one --master yarn --conf "spark.yarn.jars=local:$spark_home/jars/*" \
        --conf "spark.yarn.stagingDir=file://$work/staging" --conf spark.yarn.am.memory=512m \
        --conf spark.executorEnv.SPARK_LOCAL_IP=127.0.0.1 "${common[@]}")
    echo "weir run $i: ${t}s" >&2
    weir_times+=("$t")
done
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
unset HADOOP_CONF_DIR

# --- Spark standalone
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$spark_home/bin/spark-class" org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$port" --webui-port 0 \
    >"$work/master.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "I have been elected leader" "$work/master.log" && break; sleep 0.2; done
SPARK_WORKER_DIR="$work/worker" "$spark_home/bin/spark-class" org.apache.spark.deploy.worker.Worker \
    --host 127.0.0.1 --cores 4 --memory 6g --webui-port 0 "spark://127.0.0.1:$port" >"$work/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "Successfully registered with master" "$work/worker.log" && break; sleep 0.2; done
spark_times=()
for i in $(seq "$runs"); do
    t=$(time_one --master "spark://127.0.0.1:$port" "${common[@]}")
    echo "spark standalone run $i: ${t}s" >&2
    spark_times+=("$t")
done

w=$(printf '%s\n' "${weir_times[@]}" | median)
s=$(printf '%s\n' "${spark_times[@]}" | median)
echo "spark-pi weir(yarn shim): median ${w}s over $runs runs [${weir_times[*]}]"
echo "spark-pi spark-standalone: median ${s}s over $runs runs [${spark_times[*]}]"
echo "spark-pi ratio weir/spark-standalone: $(awk -v a="$w" -v b="$s" 'BEGIN { printf "%.3f", a / b }')"
