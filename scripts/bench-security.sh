#!/bin/bash
# The cost of security (issue 21, docs/BENCHMARKS.md): `weir bench launch`
# or `weir bench agents` with security off and on, alternated in ABBA
# order (off-on, on-off, ...) so a drifting load favours neither side;
# one line per run with the 1-minute load average at its start.
#
#   scripts/bench-security.sh WEIR SECURE_DIR launch|agents PAIRS
#
# WEIR: a release `weir` (with weir-supervisor beside it). SECURE_DIR: the
# `secure/` directory a `weir standalone --secure --work-dir DIR` made
# (DIR/secure). Environment: TASKS (launch, default 1000), AGENTS and
# REFUSE (agents, defaults 1000 and 5 s); TMPDIR=/dev/shm puts the
# sandboxes on tmpfs.
set -u
if [ $# -ne 4 ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
W=$1 D=$2 WHAT=$3 PAIRS=$4
launch() {
  if [ "$1" = on ]; then
    WEIR_CA_FILE=$D/ca.pem WEIR_TOKEN_FILE=$D/admin.token timeout 600 "$W" bench launch --tasks "${TASKS:-1000}" --isolation none \
      --define broker.auth.tokens.file=$D/tokens --define broker.auth.agent.secret.file=$D/agent-secret \
      --define agent.auth.secret.file=$D/agent-secret --define agent.tls.ca.file=$D/ca.pem \
      --define broker.tls.cert.file=$D/broker.pem --define broker.tls.key.file=$D/broker-key.pem \
      --define broker.tls.client.ca.file=$D/ca.pem \
      --define agent.tls.cert.file=$D/broker.pem --define agent.tls.key.file=$D/broker-key.pem \
      --define agent.auth.tokens.file=$D/tokens 2>/dev/null | grep "bench launch"
  else
    timeout 600 "$W" bench launch --tasks "${TASKS:-1000}" --isolation none 2>/dev/null | grep "bench launch"
  fi
}
agents() {
  local common=(bench agents --count "${AGENTS:-1000}" --duration 20 --refuse-seconds "${REFUSE:-5}")
  if [ "$1" = on ]; then
    WEIR_CA_FILE=$D/ca.pem WEIR_TOKEN_FILE=$D/admin.token timeout 600 "$W" "${common[@]}" \
      --agent-secret-file "$D/agent-secret" \
      --broker-define broker.auth.tokens.file=$D/tokens --broker-define broker.auth.agent.secret.file=$D/agent-secret \
      --broker-define broker.tls.cert.file=$D/broker.pem --broker-define broker.tls.key.file=$D/broker-key.pem \
      --broker-define broker.tls.client.ca.file=$D/ca.pem 2>/dev/null | grep "bench agents"
  else
    timeout 600 "$W" "${common[@]}" 2>/dev/null | grep "bench agents"
  fi
}
case $WHAT in launch|agents) ;; *) echo "launch or agents, not $WHAT" >&2; exit 2 ;; esac
for i in $(seq 1 "$PAIRS"); do
  if [ $((i % 2)) = 1 ]; then order="off on"; else order="on off"; fi
  for sec in $order; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    echo "$(date -u +%H:%M:%S) $WHAT security=$sec load=$load :: $($WHAT $sec | tr '\n' ' ')"
  done
done
