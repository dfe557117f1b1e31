#!/usr/bin/env bash
# Create .venv/ at the repository root and install harness, its built-in plugins and the test tools.
# On a machine without an NVIDIA GPU, torch is pinned to its CPU build (constraints/cpu.txt);
# on a GPU machine pip resolves torch freely (CUDA build).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python3 -m venv .venv
constraint=()
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    constraint=(-c constraints/cpu.txt)
fi
plugins=()
for p in plugins/*/; do
    [ -f "$p/pyproject.toml" ] && plugins+=(-e "$p")
done
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "${constraint[@]}" -e ".[dev]" "${plugins[@]}"
echo "harness installed in $root/.venv"
