#!/usr/bin/env bash
# End-to-end relay throughput, mukaika beside Postfix, in one run on the same machine:
#
#   smtp-source --(N x 10 KB, S sessions)--> mukaika (convert + relay) --> smtp-sink
#   smtp-source --(same)------------------> Postfix (queue + relay)   --> smtp-sink
#
# Both fsync before answering 250. Prints messages per second end to end (until the sink has
# every message), and mukaika's peak RSS, accept latency (p50/p99 bucket bounds from its
# mukaika_smtp_accept_seconds histogram) and CPU time. Needs postfix (smtp-source, smtp-sink, postmulti)
# (apt-get install postfix). Creates a private Postfix instance
# "postfix-bench" with postmulti (listening on loopback only) the first time it runs.
# Usage: bash benches/relay_compare.sh [messages] [sessions]
# MUKAIKA_BIN=path measures that binary instead of building target/release/mukaika;
# SKIP_POSTFIX=1 measures mukaika alone (allocator comparisons, docs/allocator.md).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
S=${2:-20}
MSG=../shared/bench/mail-10k.eml
WORK=$(mktemp -d)
MPID=
trap '[ -z "$MPID" ] || kill "$MPID" 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true; [ -n "${SKIP_POSTFIX:-}" ] || postmulti -i postfix-bench -p stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
chmod 0777 "$WORK"

MUKAIKA=${MUKAIKA_BIN:-./target/release/mukaika}
[ -n "${MUKAIKA_BIN:-}" ] || cargo build --release --quiet
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Count what reaches the sink: smtp-sink -c prints running counters; a dump file per message
# is simpler to count exactly.
sink() { # port dumpdir
  mkdir -p "$2"; chmod 0777 "$2"
  /usr/sbin/smtp-sink -u nobody -d "$2/%H%M%S." "127.0.0.1:$1" 256 >/dev/null 2>&1 &
}
wait_for() { # dir count
  local deadline=$((SECONDS + 600))
  while [ "$(find "$1" -type f | wc -l)" -lt "$2" ] && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
}
run_source() { # port
  /usr/sbin/smtp-source -c -s "$S" -m "$N" -F "$MSG" -f bench@example.invalid -t soumu@city.example.invalid "127.0.0.1:$1" >/dev/null 2>&1
}

# --- mukaika ---------------------------------------------------------------------------------
SINK1=$(port); sink "$SINK1" "$WORK/sink1"
GW=$(port)
ADMIN=$(port)
sed -e "s|listen = \"127.0.0.1:2525\"|listen = \"127.0.0.1:$GW\"|" \
    -e "s|dir = \"./data\"|dir = \"$WORK/mukaika\"|" \
    -e "s|mode = \"maildir\"|mode = \"relay\"|" \
    -e "s|# relay = \"smtp://lgwan-mta.example.lg.jp:25\"|relay = \"smtp://127.0.0.1:$SINK1\"|" \
    -e "s|listen = \"127.0.0.1:9925\"|listen = \"127.0.0.1:$ADMIN\"|" \
    <("$MUKAIKA" config default) > "$WORK/mukaika.toml"
"$MUKAIKA" serve --config "$WORK/mukaika.toml" 2>/dev/null &
MPID=$!
while ! (echo > /dev/tcp/127.0.0.1/$GW) 2>/dev/null; do sleep 0.05; done
start=$(date +%s.%N)
run_source "$GW"
wait_for "$WORK/sink1" "$N"
end=$(date +%s.%N)
MUKAIKA_RATE=$(python3 -c "print(round($N/($end-$start)))")
# Peak resident set of the gateway over the whole run (VmHWM), read before it stops.
MUKAIKA_RSS=$(( $(awk '/VmHWM/ {print $2}' "/proc/$MPID/status") / 1024 ))
# CPU time the gateway used (user + system), to tell a CPU-bound run from an fsync-bound one.
MUKAIKA_CPU=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$MPID/stat")
# Accept latency (end of DATA to 250) from the gateway's own histogram.
MUKAIKA_LAT=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | python3 -c '
import sys
b = []
for line in sys.stdin:
    if line.startswith("mukaika_smtp_accept_seconds_bucket"):
        le = line.split("le=\"")[1].split("\"")[0]
        b.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
total = b[-1][1] if b else 0
def q(p):
    for le, n in b:
        if total and n >= p * total:
            return "%.0f ms" % (le * 1000) if le != float("inf") else "> max"
    return "-"
print("p50 <= %s, p99 <= %s" % (q(0.5), q(0.99)))
')
kill -TERM "$MPID"; wait "$MPID" 2>/dev/null || true

if [ -n "${SKIP_POSTFIX:-}" ]; then
  printf '\n%-40s %10s %14s\n' "relay, $N x 10 KB, $S sessions" "msg/s" "peak RSS MB"
  printf '%-40s %10s %14s\n' "smtp-source -> mukaika -> smtp-sink" "$MUKAIKA_RATE" "$MUKAIKA_RSS"
  echo "mukaika accept latency: $MUKAIKA_LAT; CPU used: ${MUKAIKA_CPU} s over the run"
  exit 0
fi

# --- Postfix ---------------------------------------------------------------------------------
SINK2=$(port); sink "$SINK2" "$WORK/sink2"
PF=$(port)
postmulti -e init >/dev/null 2>&1 || true
postmulti -l | grep -q postfix-bench || postmulti -I postfix-bench -G bench -e create >/dev/null
postmulti -i postfix-bench -x postconf -e \
  "inet_interfaces = 127.0.0.1" "inet_protocols = ipv4" "mynetworks = 127.0.0.0/8" \
  "relayhost = [127.0.0.1]:$SINK2" "maillog_file = /var/log/postfix-bench.log" "master_service_disable =" \
  "default_destination_concurrency_limit = 50" "smtp_destination_concurrency_limit = 50"
postmulti -i postfix-bench -x postconf -MX smtp/inet 2>/dev/null || true
postmulti -i postfix-bench -x postconf -M "127.0.0.1:$PF/inet=127.0.0.1:$PF inet n - n - - smtpd"
postmulti -i postfix-bench -e enable >/dev/null 2>&1 || true
postmulti -i postfix-bench -p stop >/dev/null 2>&1 || true
postmulti -i postfix-bench -p start >/dev/null 2>&1
while ! (echo > /dev/tcp/127.0.0.1/$PF) 2>/dev/null; do sleep 0.05; done
start=$(date +%s.%N)
run_source "$PF"
wait_for "$WORK/sink2" "$N"
end=$(date +%s.%N)
POSTFIX_RATE=$(python3 -c "print(round($N/($end-$start)))")

printf '\n%-40s %10s %14s\n' "relay, $N x 10 KB, $S sessions" "msg/s" "peak RSS MB"
printf '%-40s %10s %14s\n' "smtp-source -> mukaika -> smtp-sink" "$MUKAIKA_RATE" "$MUKAIKA_RSS"
echo "mukaika accept latency: $MUKAIKA_LAT; CPU used: ${MUKAIKA_CPU} s over the run"
printf '%-40s %10s %14s\n' "smtp-source -> Postfix -> smtp-sink" "$POSTFIX_RATE" "-"
python3 -c "print(f'mukaika / Postfix = {$MUKAIKA_RATE/$POSTFIX_RATE:.2f}x (target >= 1x, aim 2x); RSS target < 200 MB')"
