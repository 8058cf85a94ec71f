#!/usr/bin/env bash
# Build (once) and cache the llama-cpp-python wheel the tests use as a real OpenAI-compatible
# chat server. PyPI ships only the sdist, which compiles llama.cpp: about 5 minutes on 2 cores.
# The wheel lands in $DOCENT_CACHE/wheels and is reused by every later clone on this machine.
set -euo pipefail

VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
CACHE="${DOCENT_CACHE:-$HOME/.cache/docent}/wheels"
PY="${PY:-.venv/bin/python}"
mkdir -p "$CACHE"

if ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
    echo "build_llama_wheel: cached $(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl)"
    exit 0
fi

echo "build_llama_wheel: compiling llama-cpp-python $VERSION (one time, a few minutes)"
# A portable CPU build: no -march=native, so the cached wheel also runs on another CPU of this kind.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$tmp" "llama-cpp-python==$VERSION"
mv "$tmp"/llama_cpp_python-*.whl "$CACHE"/
echo "build_llama_wheel: cached $(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl)"
