#!/usr/bin/env python3
"""Side-by-side benchmark of `mukaika sanitize` against its peers on ../shared/bench inputs.

Run from the repository root:  python3 benches/compare.py [--runs N]

Every figure comes from the same run on the same bytes (absolute times drift on a shared
machine; compare ratios). Wall time is the median of N runs of the whole command, process
start-up included; peak RSS is the largest maxrss of those runs (os.wait4, per child).
Targets (issue #2): PDF no slower than `qpdf in out` (a rewrite that keeps the JavaScript),
at least 10x faster than `mat2 --lightweight`, peak RSS under 3x input + 30 MB; docx at
least 20x faster than mat2. mat2 refuses .docm, so docm is measured for mukaika only.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "..", "shared", "bench")
MUKAIKA = os.path.join(ROOT, "target", "release", "mukaika")


def measure(cmd, runs, workdir):
    """Median wall time of `cmd` over `runs`, and its peak RSS as GNU time reports it (a
    Python-forked child would count the interpreter's pages before exec)."""
    times, rss = [], 0
    stats = os.path.join(workdir, "time.txt")
    for _ in range(runs):
        out = os.path.join(workdir, "out")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        argv = ["/usr/bin/time", "-f", "%M", "-o", stats] + [c.replace("{out}", out) for c in cmd]
        start = time.perf_counter()
        code = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        elapsed = time.perf_counter() - start
        if code != 0:
            return None
        times.append(elapsed)
        with open(stats) as f:
            rss = max(rss, int(f.read().split()[-1]))  # KiB
    return statistics.median(times), rss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "mukaika"], cwd=ROOT, check=True)
    for tool in ("qpdf", "mat2", "/usr/bin/time"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install {tool})")

    with tempfile.TemporaryDirectory() as work:
        cases = [
            ("pdf-170p-js.pdf", [
                ("mukaika sanitize", [MUKAIKA, "sanitize", "--out", "{out}", "INPUT"]),
                ("qpdf in out (keeps JS)", ["qpdf", "INPUT", "{out}/o.pdf"]),
                ("mat2 --lightweight", ["mat2", "--lightweight", "INPUTCOPY"]),
            ]),
            ("docx-50k.docx", [
                ("mukaika sanitize", [MUKAIKA, "sanitize", "--out", "{out}", "INPUT"]),
                ("mat2", ["mat2", "INPUTCOPY"]),
            ]),
            ("docx-5m.docx", [
                ("mukaika sanitize", [MUKAIKA, "sanitize", "--out", "{out}", "INPUT"]),
                ("mat2", ["mat2", "INPUTCOPY"]),
            ]),
        ]
        print(f"{'input':<18} {'tool':<26} {'median s':>9} {'peak RSS MB':>12} {'vs mukaika':>11}")
        for name, tools in cases:
            src = os.path.join(BENCH, name)
            size_mb = os.path.getsize(src) / 1e6
            results = {}
            for label, cmd in tools:
                copy = os.path.join(work, "copy-" + name)
                shutil.copy(src, copy)  # mat2 writes next to its input
                cmd = [c.replace("INPUTCOPY", copy).replace("INPUT", src) for c in cmd]
                results[label] = measure(cmd, args.runs, work)
            base = results["mukaika sanitize"]
            for label, res in results.items():
                if res is None:
                    print(f"{name:<18} {label:<26} {'failed':>9}")
                    continue
                ratio = res[0] / base[0] if base else float("nan")
                print(f"{name:<18} {label:<26} {res[0]:>9.3f} {res[1] / 1024:>12.1f} {ratio:>10.1f}x")
            if base:
                budget = 3 * size_mb + 30
                print(f"{'':<18} {'RSS budget 3x+30 MB':<26} {'':>9} {budget:>12.1f} {'ok' if base[1] / 1024 <= budget else 'OVER':>11}")
        print("\n'vs mukaika' = peer time / mukaika time (higher means mukaika is faster).")


if __name__ == "__main__":
    main()
