#!/usr/bin/env bash
# GPU check for issue #21: run once on a machine with one CUDA GPU, within 7 minutes (an estimated 4 on an H200).
#
# Usage, from the repository root, after `make venv` (the repo's .venv must exist):
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]        # default OUT_DIR: gpu-check/
#
# On a machine whose own Python already holds a CUDA build of torch, point PY at it instead (the
# package and its other requirements importable there, e.g. through PYTHONPATH):
#
#     PY=python3 bash benchmarks/gpu_check.sh [OUT_DIR]
#
# It prints nvidia-smi, runs the CUDA tests (`pytest -m cuda`: they skip on a machine without
# CUDA, so here they must run, and a skip is reported as a failure) and the cost benchmark on the
# GPU for the issue's target cells (ResNet-50 and ViT-B/16 at 224 px, the single-channel CNN at
# 1024 px), writing OUT_DIR/pytest-cuda.txt, OUT_DIR/scale-cuda.txt and OUT_DIR/scale-cuda.json.
# Put the tables in the README / docs/benchmarks.md ("GPU") with this script's name.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-gpu-check}
mkdir -p "$OUT"
command -v "$PY" >/dev/null || { echo "gpu_check.sh: $PY not found; run 'make venv' first, or set PY" >&2; exit 2; }

echo "== nvidia-smi"
nvidia-smi
"$PY" -c "import torch, torchvision, simplebits_audit; print('torchvision', torchvision.__version__, 'simplebits_audit from', simplebits_audit.__file__)"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"

echo "== pytest -m cuda"
# -rs lists skips: on a GPU machine none of the cuda tests may skip.
timeout 120 "$PY" -m pytest -m cuda -q -rs -p no:cacheprovider tests/integration/test_cuda.py 2>&1 | tee "$OUT/pytest-cuda.txt"
if grep -q "skipped" "$OUT/pytest-cuda.txt"; then
    echo "gpu_check.sh: CUDA tests were skipped on a machine that should have CUDA" >&2
    exit 1
fi

echo "== benchmarks/scale.py --device cuda (target cells)"
# Each cell is saved to the JSON as it finishes: at the time limit the finished cells are kept
# (then: python benchmarks/scale.py --tables-from "$OUT/scale-cuda.json"). Each method runs in its own
# process, which starts CUDA afresh (about 14 s a method on an H200 on 2026-12-04): occlusion, which
# no target names, is left out, and the limit is 300 s (170 s ran out during the ViT's sixth method).
status=0
timeout 300 "$PY" benchmarks/scale.py --device cuda --cells resnet50:224,vit_b_16:224,radiograph-cnn:1024 \
    --methods simplebits,learned,ig,ig_bounded,gradcam --cell-timeout 90 --out "$OUT/scale-cuda.json" 2>&1 | tee "$OUT/scale-cuda.txt" || status=$?
if [ "$status" -ne 0 ]; then
    echo "gpu_check.sh: scale.py exited with $status (124: its 300 s limit); finished cells are in $OUT/scale-cuda.json" >&2
    exit "$status"
fi
echo "gpu_check.sh: done; results in $OUT/"
