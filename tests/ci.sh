#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine or an already prepared one.
#
# Installs (idempotently) what the tests use as independent verifiers — qpdf, poppler-utils,
# LibreOffice with Japanese fonts, oletools and msoffcrypto-tool in venvs under target/, Info-ZIP
# zip and 7-Zip (PPAP fixtures), and ClamAV's daemon (the
# antivirus tests start a private clamd of their own; the packaged service is not used),
# Debian's Chromium with playwright-core from npm for the review UI's browser test, and
# systemd-analyze to verify the shipped unit file — then runs
# every test in the workspace. Nothing is skipped when a tool is missing: the tests fail
# instead, so this script is the one way to run them.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

packages=(qpdf poppler-utils libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui
          fonts-ipaexfont-gothic fonts-ipaexfont-mincho python3-venv ca-certificates
          postfix swaks clamav-daemon chromium systemd zip p7zip-full postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "ci: installing ${missing[*]}"
  # Postfix is only here for smtp-sink (the stand-in LGWAN MTA); keep it local and quiet.
  echo "postfix postfix/main_mailer_type select Local only" | $SUDO debconf-set-selections
  echo "postfix postfix/mailname string mukaika-test.invalid" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv=target/oletools-venv
if ! "$venv/bin/olevba" --help >/dev/null 2>&1; then
  echo "ci: installing oletools into $venv"
  rm -rf "$venv"
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "oletools==0.60.2"
fi

# msoffcrypto-tool encrypts the OOXML documents the PPAP unlock tests decrypt
# (sanitizers/tests/unlock.rs finds it in target/ppap-venv).
ppap_venv=target/ppap-venv
if ! "$ppap_venv/bin/msoffcrypto-tool" --help >/dev/null 2>&1; then
  echo "ci: installing msoffcrypto-tool into $ppap_venv"
  rm -rf "$ppap_venv"
  mkdir -p target
  python3 -m venv "$ppap_venv"
  "$ppap_venv/bin/pip" install -q --disable-pip-version-check "msoffcrypto-tool==6.1.0"
fi

if ! command -v node >/dev/null 2>&1; then
  echo "ci: installing nodejs and npm"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then
  echo "ci: installing playwright-core (the browser itself is Debian's chromium)"
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
fi

if [ ! -f ../shared/corpus/MANIFEST.tsv ]; then
  echo "ci: the reference corpus is expected at ../shared/corpus (set MUKAIKA_CORPUS)" >&2
fi

# A fresh clone gains nothing from incremental caches (about 1 GB of them); say how much disk
# the build has, so a full disk is recognisable before the linker dies of it.
export CARGO_INCREMENTAL=0
avail_kb=$(df -k --output=avail . | tail -n 1 | tr -d ' ')
echo "ci: $((avail_kb / 1024)) MB free on the disk of $PWD"
if [ "$avail_kb" -lt $((3 * 1024 * 1024)) ]; then
  echo "ci: warning: a fresh test build needs about 2 GB; a full disk shows up as a linker crash (SIGBUS)" >&2
fi
cargo test --workspace --locked

# Mail fidelity on about 500 real test mails from other projects' suites (judged by Python's
# `email`): any fidelity failure, error or false quarantine fails the run. The release binary,
# as the tool is documented to use (and as the service runs).
if [ -f ../shared/corpus/mail-ext/SOURCES.tsv ]; then
  cargo build --release --locked --bin mukaika
  python3 ../shared/tools/mail_fidelity.py --bin target/release/mukaika --fp-fail
else
  echo "ci: ../shared/corpus/mail-ext is missing; the mail fidelity check cannot run" >&2
  exit 1
fi
