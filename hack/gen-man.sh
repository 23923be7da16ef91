#!/usr/bin/env bash
# Generates the blit man pages (blit.1, blit-copy.1, …) from the clap definitions.
# Usage: hack/gen-man.sh [OUT_DIR]   (default: target/man)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/man}"
cargo run --quiet -p blit-cli --example manpage -- "$out"
