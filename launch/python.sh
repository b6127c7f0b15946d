#!/usr/bin/env bash
# Prints the command of the Python to build the virtual environment with: the first of Python
# 3.12, 3.13 that runs (on PATH, or installed by pyenv), since jax >= 0.11 needs Python >= 3.12;
# else python3, with a note on stderr (Python 3.11 gets jax 0.10, the oldest supported).
#   "$(bash launch/python.sh)" -m venv .venv
set -u
for v in 3.12 3.13; do
  if command -v "python$v" >/dev/null 2>&1 && "python$v" -c '' >/dev/null 2>&1; then
    command -v "python$v"; exit 0
  fi
  # pyenv's shims need the version chosen; its installs run as they are.
  root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  for py in $(ls -d "$root/versions/$v".*/bin/python"$v" 2>/dev/null | sort -V -r); do
    if "$py" -c '' >/dev/null 2>&1; then echo "$py"; exit 0; fi
  done
done
py=$(command -v python3)
echo "note: no Python 3.12 or 3.13 found; using $("$py" --version 2>&1), which gets jax 0.10" \
     "(the oldest supported). Install Python >= 3.12 (e.g. pyenv install 3.12) for jax 0.12." >&2
echo "$py"
