#!/usr/bin/env bash
# make demo: lab control plane + deploy/ + the operator under its ServiceAccount + deploy/examples/,
# ending with `kubectl get` of the four kinds. `scripts/demo.sh down` stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m stackops_lab.demo "$@"
