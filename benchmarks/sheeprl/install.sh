#!/usr/bin/env bash
# Install SheepRL into its own venv, benchmarks/.venv-sheeprl, for the comparison in
# benchmarks/sheeprl/compare.py. SheepRL is only installed and run, never vendored.
#
#   bash benchmarks/sheeprl/install.sh            # create or update the venv
#   SHEEPRL_VERSION=0.8.4 TORCH_VERSION=2.13.0 bash benchmarks/sheeprl/install.sh
#
# torch is installed first and pinned to the CPU build the project uses: an unpinned
# `pip install sheeprl` would otherwise resolve torch from PyPI, i.e. a multi-GB CUDA build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${SHEEPRL_VENV:-$(cd "$here/.." && pwd)/.venv-sheeprl}"
torch_version="${TORCH_VERSION:-2.13.0}"
sheeprl_version="${SHEEPRL_VERSION:-0.8.4}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check)
# The CPU wheel: from a local wheel directory / index when pip is set up with one, else
# from PyTorch's CPU index.
if ! "${pip[@]}" "torch==${torch_version}"; then
    "${pip[@]}" "torch==${torch_version}" --index-url https://download.pytorch.org/whl/cpu
fi
# A constraints file keeps pip from replacing that torch while it resolves SheepRL.
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
"$venv/bin/python" -c "import torch; print('torch==' + torch.__version__)" > "$constraints"
"${pip[@]}" -c "$constraints" "sheeprl==${sheeprl_version}"
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
import sheeprl, torch, gymnasium
print(f"sheeprl {md.version('sheeprl')} | torch {torch.__version__} | gymnasium {gymnasium.__version__}")
PY
echo "SheepRL venv ready: $venv"
