#!/usr/bin/env bash
# One command: set up, then wire two containers through the installed plugin in throwaway
# namespaces, publish a port, and explain the nat table that results. Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/netplug lab demo "$@"
