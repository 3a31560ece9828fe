#!/usr/bin/env bash
# Cluster mode on PostgreSQL (issue #21): what one node costs the shared database, and what
# the database costs the node's relay throughput. One run, one machine, the same input:
#
#   1. throughput   smtp-source --(N x 10 KB, S sessions)--> mukaika [store] sqlite   --> smtp-sink
#                   smtp-source --(the same)---------------> mukaika [store] postgres --> smtp-sink
#      messages/s end to end (until the sink has every message) and the node's CPU time per
#      message (/proc/<pid>/stat), plus the PostgreSQL server's CPU per message; ROUNDS fresh
#      nodes of each, in the order sqlite, postgres, postgres, sqlite, ...
#   2. round trips  a fresh postgres node whose connections go through a counting proxy:
#        idle   nothing sent for IDLE seconds (heartbeat every 30 s, review ticks every 10 s)
#        A      N clean 10 KB messages delivered
#        B      M messages with a blocked .exe attachment (a few bytes starting "MZ"): the
#               attachment is quarantined, the rest delivered; checked against the audit log and
#               `mukaika quarantine list`
#      For each interval: statements the node ran in the database (pg_stat_statements, top-level
#      ones, BEGIN/COMMIT included via track_utility) and protocol round trips (Sync and Query
#      messages the node sent, each answered by ReadyForQuery, counted by a small Unix-socket
#      proxy; the Close+Sync tokio-postgres sends without waiting when it drops a statement is
#      counted apart). Per message figures have the idle rate times the phase's length taken off.
#
# A private PostgreSQL 15 (Debian's /usr/lib/postgresql/15/bin; apt-get install postgresql-15)
# is initialised in a temporary folder (as the postgres user when run as root), trust auth,
# Unix socket in that folder and 127.0.0.1 on a free port, fsync=on and synchronous_commit=on
# (durable, as the SQLite store and the spool are), and stopped on exit. Needs postfix's
# smtp-source and smtp-sink (apt-get install postfix). Never builds mukaika.
#
# Usage: bash benches/cluster.sh [messages N=2000] [sessions S=10] [quarantined M=200] [idle secs=60]
# (about 2 minutes with the defaults; progress on stderr, results on stdout)
# MUKAIKA_BIN=path measures that binary (default ./target/release/mukaika, built beforehand).
# ROUNDS=2: throughput runs per backend, alternating sqlite, postgres, postgres, sqlite, ... (the
# box may be busy: the table gives the mean and each run).
# PG_COUNT=log counts statements from log_statement=all instead of pg_stat_statements (used
# automatically when the server has no pg_stat_statements.so). WAIT_SECS bounds every wait (300).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
S=${2:-10}
M=${3:-200}
IDLE=${4:-60}
ROUNDS=${ROUNDS:-2}
WAIT_SECS=${WAIT_SECS:-300}
MSG=../shared/bench/mail-10k.eml
PGBIN=/usr/lib/postgresql/15/bin
MUKAIKA=${MUKAIKA_BIN:-./target/release/mukaika}
HZ=$(getconf CLK_TCK)

[ -x "$MUKAIKA" ] || { echo "no mukaika binary at $MUKAIKA (cargo build --release first, or set MUKAIKA_BIN)" >&2; exit 1; }
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL 15 server binaries missing: apt-get install postgresql-15" >&2; exit 1; }
[ -x /usr/sbin/smtp-source ] && [ -x /usr/sbin/smtp-sink ] || { echo "smtp-source/smtp-sink missing: apt-get install postfix" >&2; exit 1; }
[ -f "$MSG" ] || { echo "input $MSG missing" >&2; exit 1; }

WORK=$(mktemp -d)
chmod 0777 "$WORK"
PGDIR=$WORK/pg
PGDATA=$PGDIR/data
PIDS=()          # every background process we start (nodes, sinks, the proxy)
PG_STARTED=
as_pg() { # program args...: a PostgreSQL server program, as the postgres user when we are root
  local p=$PGBIN/$1; shift
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$p" "$@"; else "$p" "$@"; fi
}
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -z "$PG_STARTED" ] || as_pg pg_ctl -D "$PGDATA" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "-- $*" >&2; }
die() { # message [log file]
  echo "cluster.sh: $1" >&2
  [ -z "${2:-}" ] || { echo "--- last lines of $2:" >&2; tail -20 "$2" >&2 || true; }
  exit 1
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }

# --- PostgreSQL ------------------------------------------------------------------------------
mkdir -p "$PGDIR"
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root needs the postgres user (Debian's postgresql package creates it)"
  chown postgres:postgres "$PGDIR"
fi
chmod 0700 "$PGDIR"
if [ "${PG_COUNT:-}" = log ]; then
  COUNT=log
elif [ -f /usr/lib/postgresql/15/lib/pg_stat_statements.so ]; then
  COUNT=pgss
else
  COUNT=log
fi
as_pg initdb -D "$PGDATA" -A trust -U postgres -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1 \
  || die "initdb failed" "$WORK/initdb.log"
PGPORT=$(port)
PGOPTS="-k $PGDIR -p $PGPORT -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=100"
if [ "$COUNT" = pgss ]; then
  PGOPTS="$PGOPTS -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c pg_stat_statements.track_utility=on -c pg_stat_statements.max=10000"
else
  # One log line per statement the server runs ("statement:" for simple queries, "execute"
  # for the extended protocol), prefixed with the database so our own queries are left out.
  # (pg_ctl hands -o to a shell, hence the quotes.)
  PGOPTS="$PGOPTS -c log_statement=all -c log_line_prefix='db=%d '"
fi
as_pg pg_ctl -D "$PGDATA" -l "$PGDIR/log" -w -t 60 -o "$PGOPTS" start >/dev/null 2>&1 \
  || die "pg_ctl start failed" "$PGDIR/log"
PG_STARTED=1
PGPID=$(head -1 "$PGDATA/postmaster.pid")
psql_() { # db sql
  /usr/bin/psql -h "$PGDIR" -p "$PGPORT" -U postgres -d "$1" -v ON_ERROR_STOP=1 -Atq -c "$2"
}
psql_ postgres "CREATE DATABASE mukaika"
PG_DURABLE="fsync=$(psql_ postgres 'SHOW fsync'), synchronous_commit=$(psql_ postgres 'SHOW synchronous_commit')"
say "PostgreSQL $(psql_ postgres 'SHOW server_version') on $PGDIR port $PGPORT ($PG_DURABLE)"

# Statement counting. pg_stat_statements: reset, then the sum of calls of the top-level
# statements run in database mukaika (the script's own queries run in database postgres).
# log_statement: lines of database mukaika written to the server log since a byte offset.
if [ "$COUNT" = pgss ]; then
  psql_ mukaika "CREATE EXTENSION pg_stat_statements"
  psql_ postgres "CREATE EXTENSION pg_stat_statements"
  COUNT_HOW="pg_stat_statements (top-level, track_utility=on)"
else
  COUNT_HOW="log_statement=all lines of database mukaika in the server log"
fi
MUKAIKA_DB="(SELECT oid FROM pg_database WHERE datname = 'mukaika')"
stmt_begin() {
  if [ "$COUNT" = pgss ]; then psql_ postgres "SELECT pg_stat_statements_reset()" >/dev/null
  else LOG_OFFSET=$(stat -c %s "$PGDIR/log"); fi
}
stmt_count() { # statements since stmt_begin
  if [ "$COUNT" = pgss ]; then
    psql_ postgres "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = $MUKAIKA_DB AND toplevel"
  else
    tail -c +"$((LOG_OFFSET + 1))" "$PGDIR/log" | grep -cE '^db=mukaika LOG:  (statement|execute [^:]*):' || true
  fi
}
stmt_nested() { # statements run inside functions or triggers since stmt_begin (not sent by the node)
  if [ "$COUNT" = pgss ]; then
    psql_ postgres "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = $MUKAIKA_DB AND NOT toplevel"
  else
    echo "-"
  fi
}
stmt_top() { # per message count: the busiest statements since stmt_begin
  if [ "$COUNT" = pgss ]; then
    psql_ postgres "SELECT to_char(calls::float / $1, 'FM9990.00') || E'\t' || left(regexp_replace(query, '\s+', ' ', 'g'), 90)
                    FROM pg_stat_statements WHERE dbid = $MUKAIKA_DB AND toplevel ORDER BY calls DESC LIMIT 8" \
      | sed 's/^/      /'
  fi
}
pg_cpu() { # CPU seconds of the PostgreSQL server: the postmaster, its live children, and its reaped ones
  python3 - "$PGPID" "$HZ" <<'EOF'
import os, sys
pm, hz, total = sys.argv[1], int(sys.argv[2]), 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        rest = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if pid == pm:
        total += sum(int(x) for x in rest[11:15])
    elif rest[1] == pm:
        total += int(rest[11]) + int(rest[12])
print(total / hz)
EOF
}
node_cpu() { awk -v hz="$HZ" '{printf "%.3f\n", ($14 + $15) / hz}' "/proc/$1/stat"; }

# --- the counting proxy ----------------------------------------------------------------------
# Forwards a Unix socket to the server's and parses what the client sends: after the startup
# packet every message is type byte + length. Sync ('S') and simple Query ('Q') each end a
# request the server answers with ReadyForQuery: a round trip. A Sync right after a Close ('C')
# is tokio-postgres dropping a prepared statement without waiting for the answer; counted apart.
PROXY_DIR=$WORK/proxy
mkdir -p "$PROXY_DIR"
cat > "$WORK/proxy.py" <<'EOF'
import asyncio, json, os, struct, sys
listen, target, out = sys.argv[1:4]
c = {"waited": 0, "close_sync": 0, "connections": 0}

async def client_to_server(r, w):
    buf, startup, last = bytearray(), True, None
    while data := await r.read(65536):
        w.write(data)
        await w.drain()
        buf += data
        i = 0
        while True:
            if startup:
                if len(buf) - i < 8:
                    break
                n, code = struct.unpack_from("!ii", buf, i)
                if len(buf) - i < n:
                    break
                i += n
                startup = code in (80877103, 80877104)  # SSL/GSS request: the startup packet follows
                continue
            if len(buf) - i < 5:
                break
            t, n = buf[i:i + 1], struct.unpack_from("!i", buf, i + 1)[0]
            if len(buf) - i < 1 + n:
                break
            i += 1 + n
            if t == b"S":
                c["close_sync" if last == b"C" else "waited"] += 1
            elif t == b"Q":
                c["waited"] += 1
            last = t
        del buf[:i]
    w.close()

async def server_to_client(r, w):
    while data := await r.read(65536):
        w.write(data)
        await w.drain()
    w.close()

async def handle(cr, cw):
    c["connections"] += 1
    try:
        sr, sw = await asyncio.open_unix_connection(target)
        await asyncio.gather(client_to_server(cr, sw), server_to_client(sr, cw), return_exceptions=True)
    finally:
        cw.close()

async def dump():
    while True:
        with open(out + ".tmp", "w") as f:
            json.dump(c, f)
        os.replace(out + ".tmp", out)
        await asyncio.sleep(0.1)

async def main():
    server = await asyncio.start_unix_server(handle, listen)
    asyncio.create_task(dump())
    async with server:
        await server.serve_forever()

asyncio.run(main())
EOF
python3 "$WORK/proxy.py" "$PROXY_DIR/.s.PGSQL.$PGPORT" "$PGDIR/.s.PGSQL.$PGPORT" "$WORK/proxy.json" 2>"$WORK/proxy.log" &
PIDS+=($!)
deadline=$((SECONDS + 30))
until [ -f "$WORK/proxy.json" ]; do
  [ $SECONDS -lt $deadline ] || die "the counting proxy did not start" "$WORK/proxy.log"
  sleep 0.05
done
proxy_get() { # prints "waited close_sync" so far
  sleep 0.3 # the proxy writes its counters every 0.1 s
  python3 -c "import json,sys; c = json.load(open(sys.argv[1])); print(c['waited'], c['close_sync'])" "$WORK/proxy.json"
}

# --- mukaika nodes ---------------------------------------------------------------------------
sink() { # port dumpdir
  mkdir -p "$2"; chmod 0777 "$2"
  /usr/sbin/smtp-sink -u nobody -d "$2/%H%M%S." "127.0.0.1:$1" 256 >/dev/null 2>&1 &
  PIDS+=($!)
}
files() { find "$1" -type f | wc -l; }
audit_count() { # data dir, event type
  cat "$1"/audit/*.jsonl 2>/dev/null | grep -c "\"event\":{\"type\":\"$2\"" || true
}
alive() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
wait_until() { # what, log, shell condition: bounded by WAIT_SECS, fails the run when it passes
  local deadline=$((SECONDS + WAIT_SECS))
  until eval "$3"; do
    [ -z "${NODE_PID:-}" ] || alive "$NODE_PID" || die "the node exited while waiting for $1" "$2"
    [ $SECONDS -lt $deadline ] || die "timed out after ${WAIT_SECS}s waiting for $1" "$2"
    sleep 0.05
  done
}
# config NAME SINKPORT [postgres URL]: writes $WORK/NAME.toml from the embedded default; every
# edited line must be there exactly once.
config() {
  local name=$1 sinkport=$2 url=${3:-}
  NODE_GW=$(port); NODE_ADMIN=$(port)
  "$MUKAIKA" config default | python3 -c '
import sys
text = sys.stdin.read()
name, work, gw, admin, sinkport, url = sys.argv[1:7]
edits = [
    ("listen = \"127.0.0.1:2525\"", f"listen = \"127.0.0.1:{gw}\""),
    ("dir = \"./data\"", f"dir = \"{work}/{name}-data\""),
    ("mode = \"maildir\"", "mode = \"relay\""),
    ("# relay = \"smtp://lgwan-mta.example.lg.jp:25\"", f"relay = \"smtp://127.0.0.1:{sinkport}\""),
    ("listen = \"127.0.0.1:9925\"", f"listen = \"127.0.0.1:{admin}\""),
]
if url:
    edits.append(("backend = \"sqlite\"", f"backend = \"postgres\"\nurl = \"{url}\""))
for old, new in edits:
    lines = [l for l in text.split("\n") if l == old]
    if len(lines) != 1:
        sys.exit(f"the default configuration has {len(lines)} lines {old!r}, expected 1")
    text = text.replace("\n" + old + "\n", "\n" + new + "\n")
sys.stdout.write(text)
' "$name" "$WORK" "$NODE_GW" "$NODE_ADMIN" "$sinkport" "$url" > "$WORK/$name.toml"
  "$MUKAIKA" config check --config "$WORK/$name.toml" >"$WORK/$name.check" 2>&1 \
    || die "config check failed for $WORK/$name.toml" "$WORK/$name.check"
}
start_node() { # name: sets NODE_PID; waits for SMTP
  "$MUKAIKA" serve --config "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
  NODE_PID=$!
  PIDS+=($NODE_PID)
  wait_until "node $1 to listen on SMTP" "$WORK/$1.log" "(echo > /dev/tcp/127.0.0.1/$NODE_GW) 2>/dev/null"
}
stop_node() {
  kill -TERM "$NODE_PID" 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while alive "$NODE_PID" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  kill -KILL "$NODE_PID" 2>/dev/null || true
  wait "$NODE_PID" 2>/dev/null || true
  NODE_PID=
}
send() { # port count file
  /usr/sbin/smtp-source -c -s "$S" -m "$2" -F "$3" -f bench@example.invalid -t soumu@city.example.invalid \
    "127.0.0.1:$1" >/dev/null 2>"$WORK/smtp-source.err" || die "smtp-source failed" "$WORK/smtp-source.err"
}

# Throughput of one node: N clean messages, S sessions, until its sink has them all.
# Appends "backend msg/s node-CPU-s PG-CPU-s statements" to $WORK/throughput.txt.
throughput() { # backend run [postgres URL]
  local backend=$1 name=$1$2 url=${3:-} sp t0 t1 c0 c1 p0 p1 st
  sp=$(port); sink "$sp" "$WORK/$name-sink"
  config "$name" "$sp" "$url"
  start_node "$name"
  sleep 2 # start-up work (retention pass, first heartbeat) out of the way
  [ -z "$url" ] || stmt_begin
  c0=$(node_cpu "$NODE_PID"); p0=$(pg_cpu)
  t0=$(now)
  send "$NODE_GW" "$N" "$MSG"
  wait_until "$N messages at the $name sink" "$WORK/$name.log" "[ \$(files $WORK/$name-sink) -ge $N ]"
  t1=$(now)
  c1=$(node_cpu "$NODE_PID"); p1=$(pg_cpu)
  st=-; [ -z "$url" ] || st=$(stmt_count)
  stop_node
  [ "$st" != - ] || st=0
  echo "$backend $(calc "$N / ($t1 - $t0)") $(calc "$c1 - $c0") $(calc "$p1 - $p0") $st" >> "$WORK/throughput.txt"
  say "$backend, run $2: $N messages in $(calc "'%.1f' % ($t1 - $t0)") s"
}

# A small message whose .exe attachment the policy blocks (kept in the quarantine).
cat > "$WORK/quarantine.eml" <<'EOF'
From: sender@example.invalid
To: soumu@city.example.invalid
Subject: bench quarantine
Date: Sat, 05 Dec 2026 00:00:00 +0000
Message-ID: <bench-quarantine@example.invalid>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="bench-boundary"

--bench-boundary
Content-Type: text/plain; charset=us-ascii

See the attached program.
--bench-boundary
Content-Type: application/octet-stream; name="setup.exe"
Content-Disposition: attachment; filename="setup.exe"
Content-Transfer-Encoding: base64

TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=
--bench-boundary--
EOF

URL_DIRECT="host=$PGDIR port=$PGPORT user=postgres dbname=mukaika"
URL_PROXY="host=$PROXY_DIR port=$PGPORT user=postgres dbname=mukaika"
# The schema, once, before any postgres node starts (nothing is measured yet).
config migrate 1 "$URL_DIRECT"
"$MUKAIKA" store migrate --config "$WORK/migrate.toml" >"$WORK/migrate.log" 2>&1 || die "store migrate failed" "$WORK/migrate.log"

# --- 1. throughput: sqlite, postgres, postgres, sqlite, ... (the order balanced over rounds) --
say "throughput: $N x 10 KB, $S sessions, $ROUNDS rounds of a sqlite and a postgres node"
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then order="sqlite postgres"; else order="postgres sqlite"; fi
  for b in $order; do
    if [ "$b" = sqlite ]; then throughput sqlite "$r"; else throughput postgres "$r" "$URL_DIRECT"; fi
  done
done

# --- 2. round trips, a fresh postgres node through the counting proxy --------------------------
RT_SINK=$(port); sink "$RT_SINK" "$WORK/rt-sink"
config rt "$RT_SINK" "$URL_PROXY"
start_node rt
sleep 3
RT_DATA=$WORK/rt-data
phase_begin() { local got; got=$(proxy_get); read -r W0 C0 <<<"$got"; stmt_begin; T0=$(now); }
phase_end() { # sets P_STMT P_NESTED P_RT P_CLOSE P_SECS
  P_SECS=$(calc "$(now) - $T0")
  P_STMT=$(stmt_count)
  P_NESTED=$(stmt_nested)
  local got w c
  got=$(proxy_get); read -r w c <<<"$got"
  P_RT=$((w - W0)) P_CLOSE=$((c - C0))
}
settle() { sleep 2; } # trailing work of the last message (audit, bookkeeping) inside the phase

say "round trips: idle for ${IDLE}s"
phase_begin
sleep "$IDLE"
phase_end
I_STMT=$P_STMT I_NESTED=$P_NESTED I_RT=$P_RT I_CLOSE=$P_CLOSE I_SECS=$P_SECS
I_TOP=$(stmt_top 1)

say "round trips: A, $N clean messages"
phase_begin
send "$NODE_GW" "$N" "$MSG"
wait_until "$N messages at the rt sink" "$WORK/rt.log" "[ \$(files $WORK/rt-sink) -ge $N ]"
wait_until "$N delivered records in the audit log" "$WORK/rt.log" "[ \$(audit_count $RT_DATA delivered) -ge $N ]"
settle
phase_end
A_STMT=$P_STMT A_NESTED=$P_NESTED A_RT=$P_RT A_CLOSE=$P_CLOSE A_SECS=$P_SECS
A_TOP=$(stmt_top "$N")

say "round trips: B, $M messages with a blocked .exe attachment"
Q0=$(audit_count "$RT_DATA" quarantined); D0=$(audit_count "$RT_DATA" delivered)
phase_begin
send "$NODE_GW" "$M" "$WORK/quarantine.eml"
wait_until "$M quarantined records in the audit log" "$WORK/rt.log" "[ \$(audit_count $RT_DATA quarantined) -ge $((Q0 + M)) ]"
wait_until "$M delivered records in the audit log" "$WORK/rt.log" "[ \$(audit_count $RT_DATA delivered) -ge $((D0 + M)) ]"
wait_until "$M more messages at the rt sink" "$WORK/rt.log" "[ \$(files $WORK/rt-sink) -ge $((N + M)) ]"
settle
phase_end
B_STMT=$P_STMT B_NESTED=$P_NESTED B_RT=$P_RT B_CLOSE=$P_CLOSE B_SECS=$P_SECS
B_TOP=$(stmt_top "$M")
B_AUDIT=$(( $(audit_count "$RT_DATA" quarantined) - Q0 ))
# After the measurements: the CLI may read the database too.
B_LISTED=$("$MUKAIKA" quarantine list --json --config "$WORK/rt.toml" 2>"$WORK/qlist.err" | grep -c '"reason":"blocked-kind"' || true)
[ "$B_LISTED" -gt 0 ] || { echo "mukaika quarantine list:" >&2; head -3 "$WORK/qlist.err" >&2; }
stop_node

# --- report ----------------------------------------------------------------------------------
python3 - <<EOF
idle_secs = $I_SECS
def per(total, secs, n, idle):
    net = total - idle / idle_secs * secs
    return f"{total / n:8.2f} {max(net, 0) / n:8.2f}"
print()
print("PostgreSQL: private 15 server, $PG_DURABLE; statements counted with $COUNT_HOW;")
print("round trips = Sync/Query messages the node sent and waited for (counting proxy).")
print()
print(f"{'database work per message ([store] postgres)':46} {'raw':>8} {'net':>8}   (net: idle rate x phase length taken off)")
print(f"{'statements per delivered message (A, N=$N)':46} {per($A_STMT, $A_SECS, $N, $I_STMT)}")
print(f"{'round trips per delivered message':46} {per($A_RT, $A_SECS, $N, $I_RT)}")
print(f"{'statements per quarantined message (B, M=$M)':46} {per($B_STMT, $B_SECS, $M, $I_STMT)}")
print(f"{'round trips per quarantined message':46} {per($B_RT, $B_SECS, $M, $I_RT)}")
print(f"{'idle, per minute (over %.0f s)' % idle_secs:46} {$I_STMT * 60 / idle_secs:8.1f} statements {$I_RT * 60 / idle_secs:8.1f} round trips")
print(f"not counted above: unwaited Close+Sync (dropped statements) idle $I_CLOSE, A $A_CLOSE, B $B_CLOSE;")
print(f"  statements nested in functions/triggers idle $I_NESTED, A $A_NESTED, B $B_NESTED")
print(f"quarantined in B: {$B_AUDIT} by the audit log, $B_LISTED blocked-kind items in 'mukaika quarantine list' (of $M sent)")
print()
runs = {"sqlite": [], "postgres": []}
for line in open("$WORK/throughput.txt"):
    b, rate, cpu, pgcpu, st = line.split()
    runs[b].append((float(rate), float(cpu), float(pgcpu), float(st)))
def mean(b, i):
    return sum(r[i] for r in runs[b]) / len(runs[b])
print(f"{'relay, $N x 10 KB, $S sessions, mean of $ROUNDS':44} {'msg/s':>7} {'node CPU ms/msg':>16} {'PG CPU ms/msg':>14} {'stmts/msg':>10}   msg/s of each run")
for b in ("sqlite", "postgres"):
    pg = b == "postgres"
    print(f"{'[store] backend = ' + b:44} {mean(b, 0):7.0f} {mean(b, 1) * 1000 / $N:16.2f} "
          f"{(f'{mean(b, 2) * 1000 / $N:.2f}' if pg else '-'):>14} {(f'{mean(b, 3) / $N:.2f}' if pg else '-'):>10}   "
          + ", ".join(f"{r[0]:.0f}" for r in runs[b]))
print(f"postgres / sqlite = {mean('postgres', 0) / mean('sqlite', 0):.2f}x (stmts/msg: raw, the node's idle statements included)")
EOF
if [ "$COUNT" = pgss ]; then
  echo
  echo "busiest statements, calls per message (raw):"
  echo "  A, delivered:";   echo "${A_TOP:-      (none)}"
  echo "  B, quarantined:"; echo "${B_TOP:-      (none)}"
  echo "  idle, over ${IDLE}s (calls):"; echo "${I_TOP:-      (none)}"
fi
