#!/usr/bin/env bash
# The real Docusaurus for the deep-link tests: @docusaurus/core and preset-classic from npm,
# installed once into $DOCENT_CACHE/docusaurus (outside the repository, reused by every checkout).
# A test builds its fixture site with $DOCENT_CACHE/docusaurus/node_modules/.bin/docusaurus.
set -euo pipefail

CACHE="${DOCENT_CACHE:-$HOME/.cache/docent}"
DIR="$CACHE/docusaurus"
VERSION="3.10.2"

if [ -f "$DIR/.installed-$VERSION" ]; then
    echo "setup_docusaurus: $DIR holds Docusaurus $VERSION"
    exit 0
fi
command -v npm >/dev/null || { echo "setup_docusaurus: npm is not installed" >&2; exit 1; }
mkdir -p "$DIR"
cat > "$DIR/package.json" <<JSON
{
  "name": "docent-docusaurus-fixture",
  "private": true,
  "dependencies": {
    "@docusaurus/core": "$VERSION",
    "@docusaurus/preset-classic": "$VERSION",
    "@mdx-js/react": "^3.0.0",
    "clsx": "^2.0.0",
    "prism-react-renderer": "^2.3.0",
    "react": "^19.0.0",
    "react-dom": "^19.0.0"
  }
}
JSON
start=$(date +%s)
(cd "$DIR" && npm install --no-audit --no-fund --loglevel=error)
touch "$DIR/.installed-$VERSION"
echo "setup_docusaurus: installed Docusaurus $VERSION in $(( $(date +%s) - start )) s"
