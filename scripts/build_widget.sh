#!/usr/bin/env bash
# The chat widget: widget/src/*.js bundled with its npm dependencies (marked, DOMPurify) into
# functions/web/static/widget.js by esbuild. The bundle is committed (Lambda and Spaces serve it
# as a static file, no node at run time); tests/test_widget.py rebuilds it and checks the result
# is byte-identical, so nobody edits the bundle by hand.
#
# npm dependencies come from widget/package-lock.json (npm ci), installed once into
# $DOCENT_CACHE/widget/<hash of the lock file>, outside the repository, reused by every checkout.
#
#   scripts/build_widget.sh             build functions/web/static/widget.js
#   scripts/build_widget.sh --out PATH  build to PATH instead
#   scripts/build_widget.sh --deps      install the dependencies only; print their node_modules
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${DOCENT_CACHE:-$HOME/.cache/docent}"
OUT="$ROOT/functions/web/static/widget.js"
DEPS_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --deps) DEPS_ONLY=1; shift ;;
        *) echo "build_widget: unknown argument $1" >&2; exit 2 ;;
    esac
done

command -v npm >/dev/null || { echo "build_widget: npm is not installed" >&2; exit 1; }
HASH="$(sha256sum "$ROOT/widget/package-lock.json" | cut -c1-16)"
DIR="$CACHE/widget/$HASH"
if [ ! -f "$DIR/.installed" ]; then
    start=$(date +%s)
    # A fresh folder per attempt, renamed into place: concurrent checkouts never see half an install.
    mkdir -p "$CACHE/widget"
    TMP="$(mktemp -d "$CACHE/widget/.tmp-XXXXXX")"
    cp "$ROOT/widget/package.json" "$ROOT/widget/package-lock.json" "$TMP/"
    (cd "$TMP" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
    touch "$TMP/.installed"
    if ! mv -T "$TMP" "$DIR" 2>/dev/null; then rm -rf "$TMP"; fi
    echo "build_widget: npm ci into $DIR in $(( $(date +%s) - start )) s" >&2
fi
if [ "$DEPS_ONLY" = 1 ]; then
    echo "$DIR/node_modules"
    exit 0
fi

version() { node -p "require('$DIR/node_modules/$1/package.json').version"; }
BANNER="/* Docent chat widget: built from widget/ by scripts/build_widget.sh (esbuild $(version esbuild)); do not edit.
 * Bundles marked v$(version marked) (Copyright (c) 2018-2026, MarkedJS; 2011-2018, Christopher Jeffrey; MIT License,
 * https://github.com/markedjs/marked) and DOMPurify (licence at the end). */"
# Relative paths only (the output must not depend on where the cache or checkout lives).
cd "$ROOT"
NODE_PATH="$DIR/node_modules" "$DIR/node_modules/.bin/esbuild" widget/src/main.js \
    --bundle --minify --format=iife --target=es2020 --charset=utf8 --legal-comments=eof \
    --banner:js="$BANNER" --log-level=warning --outfile="$OUT"
echo "build_widget: $OUT ($(wc -c < "$OUT") bytes, $(gzip -9 -c "$OUT" | wc -c) gzipped)" >&2
