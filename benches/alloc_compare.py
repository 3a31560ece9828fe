#!/usr/bin/env python3
"""Allocator comparison (docs/allocator.md): the same benchmarks on several builds of mukaika.

Run from the repository root after building one binary per variant, e.g. with a different
`#[global_allocator]` in src/main.rs and benches/mail_throughput.rs (see docs/allocator.md):
  python3 benches/alloc_compare.py --rounds 6 --files 300 \\
      system=target/alloc-bins/system@target/alloc-bins/mail-system \\
      hugetlb=target/alloc-bins/system:GLIBC_TUNABLES=glibc.malloc.hugetlb=1@target/alloc-bins/mail-system ...

A variant is NAME=BINARY[:VAR=VALUE], optionally with a mail-bench binary as
NAME=BINARY[:VAR=VALUE]@BENCH. Rounds run the variants in alternating order (A B C D, D C B A,
...) so drift on a shared machine weighs on all alike. Per round and variant: `mukaika sanitize`
on each ../shared/bench input (--reps times: wall time, CPU time and page faults from wait4, max RSS from GNU time), benches/import.py
(--files), benches/relay_compare.sh with SKIP_POSTFIX (--messages), and the mail_throughput bench
binary if given. Raw results go to --out as JSON lines; the summary prints per benchmark and
variant the median, the interquartile range [p25..p75] and (min..max).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "..", "shared", "bench")
INPUTS = ["pdf-170p-js.pdf", "docx-50k.docx", "docx-5m.docx"]


def parse_variant(text):
    name, rest = text.split("=", 1)
    rest, _, bench = rest.partition("@")
    binary, _, env = rest.partition(":")
    extra = dict([env.split("=", 1)]) if env else {}
    return name, os.path.abspath(binary), extra, (os.path.abspath(bench) if bench else None)


def wrapper(work, name, binary, extra):
    """A binary path that runs `binary` with `extra` in its environment (exec keeps the pid)."""
    if not extra:
        return binary
    path = os.path.join(work, "run-" + name)
    env = " ".join(f"{k}={v}" for k, v in extra.items())
    with open(path, "w") as f:
        f.write(f'#!/bin/sh\n{env} exec "{binary}" "$@"\n')
    os.chmod(path, 0o755)
    return path


def sanitize(binary, extra, src, work):
    out = os.path.join(work, "out")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    stats = os.path.join(work, "time.txt")
    env = dict(os.environ, **extra)
    # GNU time's %e has 10 ms resolution, too coarse here: wall time is taken around it.
    # GNU time's %U/%S are as coarse: CPU time comes from wait4 on the time process, whose
    # rusage includes the mukaika child it reaped (microseconds; GNU time's own share is tiny).
    start = time.perf_counter()
    child = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", stats, binary, "sanitize", "--out", out, src],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{binary} sanitize {src} failed")
    rss = open(stats).read().split()[-1]
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_stime, usage.ru_minflt, int(rss) / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--only", default="sanitize,import,relay,mail")
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "alloc-results.jsonl"))
    args = parser.parse_args()
    only = set(args.only.split(","))
    variants = [parse_variant(v) for v in args.variants]
    results = {}  # (bench, variant) -> [values]

    def record(bench, name, value, log):
        results.setdefault((bench, name), []).append(value)
        log.write(json.dumps({"bench": bench, "variant": name, "value": value}) + "\n")
        log.flush()

    with tempfile.TemporaryDirectory() as work, open(args.out, "a") as log:
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for name, binary, extra, bench in order:
                if "sanitize" in only:
                    for inp in INPUTS:
                        for _ in range(args.reps):
                            wall, cpu, sys_s, faults, rss = sanitize(binary, extra, os.path.join(BENCH, inp), work)
                            record(f"sanitize {inp} s", name, wall, log)
                            record(f"sanitize {inp} CPU s", name, cpu, log)
                            record(f"sanitize {inp} sys s", name, sys_s, log)
                            record(f"sanitize {inp} faults", name, faults, log)
                            record(f"sanitize {inp} RSS MB", name, rss, log)
                path = wrapper(work, name, binary, extra)
                if "import" in only:
                    out = subprocess.run(["python3", "benches/import.py", "--files", str(args.files),
                                          "--mukaika", path], cwd=ROOT, capture_output=True, text=True,
                                         check=True).stdout
                    m = re.search(r"in ([\d.]+) s: (\d+) files/s.*peak RSS ([\d.]+) MB", out)
                    record("import s", name, float(m.group(1)), log)
                    record("import RSS MB", name, float(m.group(3)), log)
                if "relay" in only:
                    out = subprocess.run(["bash", "benches/relay_compare.sh", str(args.messages)], cwd=ROOT,
                                         capture_output=True, text=True, check=True,
                                         env=dict(os.environ, MUKAIKA_BIN=path, SKIP_POSTFIX="1")).stdout
                    m = re.search(r"smtp-sink\s+(\d+)\s+(\d+)", out)
                    cpu = re.search(r"CPU used: ([\d.]+) s", out)
                    record("relay msg/s", name, float(m.group(1)), log)
                    record("relay RSS MB", name, float(m.group(2)), log)
                    record("relay CPU s", name, float(cpu.group(1)), log)
                if "mail" in only and bench:
                    out = subprocess.run([bench], cwd=ROOT, capture_output=True, text=True, check=True,
                                         env=dict(os.environ, **extra)).stdout
                    for line in out.splitlines():
                        m = re.match(r"(\S+)\s+(\d+)\s+(\d+)\s+[\d.]+\s+[\d.]+$", line)
                        if m:
                            record(f"mail {m.group(1)} msg/s", name, float(m.group(3)), log)
                    log.write(json.dumps({"mail_raw": name, "out": out}) + "\n")
            print(f"round {r + 1} done", flush=True)

    names = [v[0] for v in variants]
    print(f"{'benchmark':<34}" + "".join(f"{n:>40}" for n in names))
    for bench in dict.fromkeys(b for b, _ in results):
        cells = []
        for n in names:
            vals = results.get((bench, n), [])
            if len(vals) > 1:
                q = statistics.quantiles(vals, n=4, method="inclusive")
                cells.append(f"{q[1]:.3f} [{q[0]:.3f}..{q[2]:.3f}] ({min(vals):.3f}..{max(vals):.3f})")
            elif vals:
                cells.append(f"{vals[0]:.3f}")
            else:
                cells.append("-")
        print(f"{bench:<34}" + "".join(f"{c:>40}" for c in cells))


if __name__ == "__main__":
    main()
