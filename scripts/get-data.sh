#!/usr/bin/env bash
# Make Fashion-MNIST available: use it where gdwlib already finds it, else install Debian's
# dataset-fashion-mnist package (as root or through sudo), else say what to do.
set -u
PY=${1:-.venv/bin/python}
check() { "$PY" -c "from gdwlib.data import load_fashion_mnist as f; f('train'); f('test')" 2>/dev/null; }
check && exit 0
if command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else SUDO=none; fi
  if [ "$SUDO" != none ]; then
    echo "Installing Debian's dataset-fashion-mnist ..."
    $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }
  fi
fi
check && exit 0
"$PY" -c "from gdwlib.data import load_fashion_mnist as f; f('train')" 2>&1 | tail -1 >&2
exit 1
