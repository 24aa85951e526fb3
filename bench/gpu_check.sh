#!/usr/bin/env bash
# GPU acceptance run of l2gnet-monai: one script, results (results.json, results.md, pytest.xml, inference.json)
# in the folder given as argument. About 5 minutes on one GPU; `--device cpu --quick` is the CI smoke run (< 1 min).
#
#   bash bench/gpu_check.sh OUT_DIR [--device cuda|cpu] [--quick] [--wheelhouse DIR]
#   bash bench/gpu_check.sh --make-wheelhouse DIR [--python-version 3.12] [--platform x86_64|aarch64]
#
# Air-gapped GPU servers: on a machine with internet, make the wheelhouse for the server's Python (the project's
# wheel and every dependency except torch and its CUDA libraries):
#     bash bench/gpu_check.sh --make-wheelhouse wheelhouse --python-version 3.12
# copy `wheelhouse/` and this repository over, then
#     bash bench/gpu_check.sh results --wheelhouse wheelhouse
# installs from the wheelhouse only (`pip --no-index`), with the installed torch pinned by a constraints file so
# that pip never replaces it, and runs the checks. Without --wheelhouse the project must already be importable.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

out="" device="cuda" quick="" wheelhouse="" make_wheelhouse="" python_version="" platform="x86_64"
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --quick) quick="--quick"; shift ;;
        --wheelhouse) wheelhouse="$2"; shift 2 ;;
        --make-wheelhouse) make_wheelhouse="$2"; shift 2 ;;
        --python-version) python_version="$2"; shift 2 ;;
        --platform) platform="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) out="$1"; shift ;;
    esac
done

if [ -n "$make_wheelhouse" ]; then
    mkdir -p "$make_wheelhouse"
    target=()
    if [ -n "$python_version" ]; then
        # pip does not expand manylinux tags: name the common ones for the architecture
        target=(--python-version "$python_version" --only-binary=:all:)
        for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux_2_5 manylinux1; do
            target+=(--platform "${tag}_$platform")
        done
    fi
    report="$(mktemp)"
    # resolve the project + pytest for the target Python without installing anything, then download every
    # resolved wheel except torch and the CUDA libraries it brings (the server has its own)
    PIP_CONSTRAINT="" "$PYTHON" -m pip install --dry-run --ignore-installed --quiet --report "$report" \
        --target "$(mktemp -d)" "${target[@]}" "$REPO" pytest
    "$PYTHON" - "$report" > "$report.txt" <<'EOF'
import json, re, sys
skip = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*|l2gnet-monai)$")
for item in json.load(open(sys.argv[1]))["install"]:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if not skip.match(name.lower().replace("_", "-")):
        print(f"{name}=={version}")
EOF
    PIP_CONSTRAINT="" "$PYTHON" -m pip download --no-deps --quiet -d "$make_wheelhouse" "${target[@]}" -r "$report.txt"
    "$PYTHON" -m pip wheel --no-deps --quiet -w "$make_wheelhouse" "$REPO"
    echo "wheelhouse $make_wheelhouse: $(ls "$make_wheelhouse" | wc -l) wheels (no torch)"
    exit 0
fi

if [ -z "$out" ]; then
    echo "gpu_check.sh: give the output folder, e.g. bash bench/gpu_check.sh results (see --help)" >&2
    exit 2
fi
if [ "$device" != "cuda" ] && [ "$device" != "cpu" ]; then
    echo "gpu_check.sh: --device must be cuda or cpu, got '$device'" >&2
    exit 2
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
start=$(date +%s)

if [ -n "$wheelhouse" ]; then
    if [ ! -d "$wheelhouse" ]; then
        echo "gpu_check.sh: wheelhouse '$wheelhouse' is not a folder; make it with --make-wheelhouse" >&2
        exit 2
    fi
    torch_version="$("$PYTHON" -c 'import torch; print(torch.__version__)')" || {
        echo "gpu_check.sh: no torch in $PYTHON; install the server's CUDA torch first" >&2
        exit 2
    }
    constraints="$out/constraints.txt"
    echo "torch==$torch_version" > "$constraints"
    # the dependencies (what is already installed stays), then this project's wheel itself, replacing any older copy
    PIP_CONSTRAINT="" "$PYTHON" -m pip install --no-index --find-links "$wheelhouse" -c "$constraints" \
        l2gnet-monai pytest 2>&1 | tee "$out/install.log"
    PIP_CONSTRAINT="" "$PYTHON" -m pip install --no-index --no-deps --force-reinstall -c "$constraints" \
        "$wheelhouse"/l2gnet_monai-*.whl 2>&1 | tee -a "$out/install.log"
    echo "installed from $wheelhouse; torch kept at $torch_version"
fi

if [ "$device" = "cuda" ]; then
    "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu_check.sh: torch.cuda.is_available() is False; use --device cpu")'
    (nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true) > "$out/nvidia-smi.csv" 2>&1
fi

cd "$REPO"
# the checks import the checkout they come with (the wheelhouse's project wheel is made from it)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
echo "== CUDA-only tests (pytest -m cuda)"
# exit status 5 = no test ran; skips on CPU are the expected outcome there
"$PYTHON" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider --junitxml="$out/pytest.xml" || true
echo "== training, distributed, TorchScript and inference checks"
status=0
"$PYTHON" bench/gpu_check.py "$out" --device "$device" $quick || status=$?
echo "gpu_check.sh: $(( $(date +%s) - start )) s; results in $out (results.md, results.json)"
exit $status
