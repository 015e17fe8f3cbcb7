#!/usr/bin/env bash
# One sitting: the peer (audiolm-pytorch), torch's matmul peak, our reference suite, the ratios.
#
#   bash benchmarks/sitting.sh PEER_DIR [OUT_DIR]
#
# PEER_DIR holds the peer's driver and setup script (in this project's CI:
# ../shared/bench/audiolm_pytorch); its venv is made once with `bash PEER_DIR/setup.sh`
# (/tmp/audiolm-pytorch-venv, or $PEER_VENV). Both sides run one after the other on the same
# cores (never at once), so their ratio is a same-machine, same-sitting figure.
set -euo pipefail
PEER_DIR=${1:?usage: bash benchmarks/sitting.sh PEER_DIR [OUT_DIR]}
OUT=${2:-/tmp/sitting}
PEER_VENV=${PEER_VENV:-/tmp/audiolm-pytorch-venv}
PY=${PY:-.venv/bin/python}
[ -x "$PEER_VENV/bin/python" ] || { echo "no peer venv at $PEER_VENV: run bash $PEER_DIR/setup.sh" >&2; exit 2; }
mkdir -p "$OUT"
echo "[1/4] torch matmul peak" >&2
"$PEER_VENV/bin/python" benchmarks/torch_peak.py --threads "$(nproc)" > "$OUT/torch_peak.json"
echo "[2/4] audiolm-pytorch reference shapes (about 10 min on 2 cores)" >&2
"$PEER_VENV/bin/python" "$PEER_DIR/bench_audiolm_pytorch.py" --threads "$(nproc)" \
    > "$OUT/peer.json" 2> "$OUT/peer.log"
echo "[3/4] audiolm-jax reference suite" >&2
"$PY" -m benchmarks.run --suite reference --json "$OUT/ours.json"
echo "[4/4] ratios" >&2
"$PY" -m benchmarks.compare --ours "$OUT/ours.json" --peer "$OUT/peer.json" \
    --peer_peak "$OUT/torch_peak.json" --json "$OUT/compare.json"
