#!/usr/bin/env python3
"""End-to-end import-folder throughput: 1,000 mixed files through `mukaika import once`.

Run from the repository root:  python3 benches/import.py [--files N]

The mix (made fresh in a temp folder, nothing committed): 40 % text (1 KB), 20 % CSV (10 KB,
Japanese, some formula cells), 20 % docx-50k, 10 % pdf-170p-js (~1 MB, JavaScript in an
incremental update), 10 % the 4 MB PNG from docx-5m — spread over department subfolders with
Japanese names. Prints files per second, MB per second and peak RSS (GNU time) for the whole
pass, start-up, audit and fsyncs included. There is no peer that imports folders the same way;
the figure is tracked run to run.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "..", "shared", "bench")
MUKAIKA = os.path.join(ROOT, "target", "release", "mukaika")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--mukaika", help="measure this binary instead of building target/release/mukaika")
    args = parser.parse_args()
    global MUKAIKA
    if args.mukaika:
        MUKAIKA = os.path.abspath(args.mukaika)
    else:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    with zipfile.ZipFile(os.path.join(BENCH, "docx-5m.docx")) as z:
        png = z.read("word/media/image1.png")
    docx = open(os.path.join(BENCH, "docx-50k.docx"), "rb").read()
    pdf = open(os.path.join(BENCH, "pdf-170p-js.pdf"), "rb").read()
    text = ("お知らせ本文 " * 60 + "\n").encode("utf-8")[:1024]
    csv = ("氏名,金額,備考\r\n" + "".join(
        f"架空 太郎{i},{i * 37},{'=1+1' if i % 50 == 0 else '備考'}\r\n" for i in range(250)
    )).encode("utf-8")
    kinds = [("txt", text)] * 4 + [("csv", csv)] * 2 + [("docx", docx)] * 2 + [("pdf", pdf), ("png", png)]
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "data")
        config = os.path.join(work, "mukaika.toml")
        default = subprocess.run([MUKAIKA, "config", "default"], check=True, capture_output=True, text=True).stdout
        text_cfg = (default.replace('dir = "./data"', f'dir = "{data}"')
                    .replace("settle_secs = 5", "settle_secs = 0"))
        open(config, "w").write(text_cfg)
        total = 0
        for i in range(args.files):
            ext, body = kinds[i % len(kinds)]
            folder = os.path.join(data, "import", f"課{i % 8}", f"{2020 + i % 5}年度")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"資料{i:04}.{ext}"), "wb") as f:
                f.write(body)
            total += len(body)
        stats = os.path.join(work, "time.txt")
        start = time.perf_counter()
        out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", stats, MUKAIKA, "import", "once", "--config", config],
                             capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if out.returncode != 0:
            sys.exit(f"import failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
        rss = int(open(stats).read().split()[-1]) / 1024
        print(out.stdout.strip().splitlines()[-1])
        print(f"{args.files} files, {total / 1e6:.1f} MB in {elapsed:.2f} s: "
              f"{args.files / elapsed:.0f} files/s, {total / 1e6 / elapsed:.1f} MB/s, peak RSS {rss:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
