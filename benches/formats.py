#!/usr/bin/env python3
"""Per-format throughput and peak memory of `mukaika sanitize`, next to mat2 where mat2 reads
the format, on inputs derived from ../shared/bench in the same run.

Run from the repository root:  python3 benches/formats.py [--runs N]

Inputs (made fresh each run, nothing is committed): the 4 MB PNG inside docx-5m.docx and the
JPEG and GIF LibreOffice makes from it; docx-50k as ODT, DOC and RTF and docx-5m as ODT (by
LibreOffice); a 2 MB CSV with Japanese cells and formula cells; a ZIP and a tar.gz of several
of these. Every figure is the median wall time of N runs of the whole command (start-up
included) and the largest peak RSS (GNU time). Throughput is input MB / median seconds.
Compare ratios, not absolute figures: this machine is shared.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import BENCH, MUKAIKA, ROOT, measure  # noqa: E402


def soffice(work, target, *inputs):
    """Converts each input into `work`. soffice exits 0 even when it has no export filter for
    the target (PNG to JPEG or GIF needs Draw: libreoffice-draw-nogui, which Debian installs
    with libreoffice-impress-nogui), so every output is checked and its absence reported."""
    profile = os.path.join(work, "lo-profile")
    run = subprocess.run(
        ["soffice", f"-env:UserInstallation=file://{profile}", "--headless", "--norestore",
         "--convert-to", target, "--outdir", work, *inputs],
        check=True, capture_output=True, text=True, timeout=600)
    ext = target.split(":")[0]
    for path in inputs:
        out = os.path.join(work, os.path.splitext(os.path.basename(path))[0] + "." + ext)
        if not os.path.exists(out):
            sys.exit(f"soffice made no {ext} from {os.path.basename(path)} (for images it needs "
                     f"libreoffice-draw-nogui):\n{run.stdout}{run.stderr}")


def make_inputs(work):
    with zipfile.ZipFile(os.path.join(BENCH, "docx-5m.docx")) as z:
        png = z.read("word/media/image1.png")
    paths = {}
    paths["png"] = os.path.join(work, "picture.png")
    with open(paths["png"], "wb") as f:
        f.write(png)
    soffice(work, "jpg", paths["png"])
    soffice(work, "gif", paths["png"])
    paths["jpeg"] = os.path.join(work, "picture.jpg")
    paths["gif"] = os.path.join(work, "picture.gif")
    for name in ("docx-50k.docx", "docx-5m.docx"):
        shutil.copy(os.path.join(BENCH, name), work)
    soffice(work, "odt", os.path.join(work, "docx-50k.docx"), os.path.join(work, "docx-5m.docx"))
    soffice(work, "doc", os.path.join(work, "docx-50k.docx"))
    soffice(work, "rtf", os.path.join(work, "docx-50k.docx"))
    paths["odt 50k"] = os.path.join(work, "docx-50k.odt")
    paths["odt 5m"] = os.path.join(work, "docx-5m.odt")
    paths["doc"] = os.path.join(work, "docx-50k.doc")
    paths["rtf"] = os.path.join(work, "docx-50k.rtf")

    rows = ["氏名,所属,金額,備考"]
    for i in range(40000):
        note = f"=HYPERLINK(\"x{i}\")" if i % 1000 == 0 else f"第{i}号 資料"
        rows.append(f"架空 太郎{i},総務課,{i * 37 % 100000},{note}")
    paths["csv"] = os.path.join(work, "list.csv")
    with open(paths["csv"], "w", encoding="utf-8", newline="\r\n") as f:
        f.write("\n".join(rows) + "\n")

    members = [paths["jpeg"], paths["doc"], paths["csv"], os.path.join(work, "docx-50k.docx")]
    paths["zip"] = os.path.join(work, "bundle.zip")
    with zipfile.ZipFile(paths["zip"], "w", zipfile.ZIP_DEFLATED) as z:
        for m in members:
            z.write(m, "資料/" + os.path.basename(m))
    paths["tar.gz"] = os.path.join(work, "bundle.tar.gz")
    with tarfile.open(paths["tar.gz"], "w:gz") as t:
        for m in members:
            t.add(m, "docs/" + os.path.basename(m))
    return paths


# mat2 reads these kinds; for the rest mukaika is measured alone.
MAT2 = {"png", "jpeg", "gif", "odt 50k", "odt 5m", "zip", "tar.gz"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "mukaika"], cwd=ROOT, check=True)
    for tool in ("mat2", "soffice", "/usr/bin/time"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    with tempfile.TemporaryDirectory() as work:
        inputs = make_inputs(work)
        print(f"{'format':<9} {'MB':>6} {'tool':<18} {'median s':>9} {'MB/s':>7} {'peak RSS MB':>12} {'mat2/mukaika':>13}")
        for label, path in inputs.items():
            size = os.path.getsize(path) / 1e6
            tools = [("mukaika sanitize", [MUKAIKA, "sanitize", "--out", "{out}", "INPUT"])]
            if label in MAT2:
                tools.append(("mat2", ["mat2", "INPUTCOPY"]))
            results = {}
            for tool, cmd in tools:
                copy = os.path.join(work, "copy-" + os.path.basename(path))
                shutil.copy(path, copy)  # mat2 writes next to its input
                argv = [c.replace("INPUTCOPY", copy).replace("INPUT", path) for c in cmd]
                results[tool] = measure(argv, args.runs, work)
            base = results["mukaika sanitize"]
            for tool, result in results.items():
                if result is None:
                    print(f"{label:<9} {size:>6.2f} {tool:<18} {'failed':>9}")
                    continue
                secs, rss = result
                ratio = f"{result[0] / base[0]:.1f}x" if tool == "mat2" and base else ""
                print(f"{label:<9} {size:>6.2f} {tool:<18} {secs:>9.3f} {size / secs:>7.1f} {rss / 1024:>12.1f} {ratio:>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
