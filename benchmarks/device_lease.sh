#!/usr/bin/env bash
# Everything the book checks on a lent GPU machine, as one command that fits one lease (its parts took
# 5-6 minutes on an H200; no time limit below exceeds 210 s).
#
# The device tool's machine has its own Python with torch, NumPy, SciPy, seaborn and pytest, but not this
# package's pins, nbformat or nbclient: the package runs from the working tree (PYTHONPATH), and the
# notebooks run as plain scripts of their code cells, in book/, as nbmake would.
#
#   1. the two benchmarks of issue #5 on the GPU (benchmarks/training.py, benchmarks/network_jacobian.py);
#   2. benchmarks/device_check.py: CPU and GPU training agree, which precisions leave the spectra alone,
#      paper-scale throughput and hours;
#   3. every notebook at `quick` scale with the GPU as the default device (their claims are asserts), side
#      by side with the unit tests (whose trainings then also run on the GPU).
#
# Each step has a time limit and writes its log to $OUT (at most 8 files come back); a failing step does
# not stop the next. `$OUT/summary.txt` lists each step's exit status and seconds; the script exits 1 when
# any step or notebook failed.
#
# Run on the device:  bash benchmarks/device_lease.sh
# Dry run here:       LEASE_DRY=1 LEASE_NOTEBOOKS=01 LEASE_TESTS=tests/test_nets.py LEASE_PYTEST_ARGS=-n2 \
#                         PYTHON=.venv/bin/python bash benchmarks/device_lease.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/diffnb-lease}
mkdir -p "$OUT"
: >"$OUT/summary.txt"
: >"$OUT/notebooks.txt"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export DIFFNB_CACHE=${DIFFNB_CACHE:-/tmp/diffnb-lease-cache} DIFFNB_PROGRESS=0 BENCH_THREADS=1
PY=${PYTHON:-python3}
case $PY in /*) ;; */*) PY=$PWD/$PY ;; esac  # the notebooks run from book/
DRY=${LEASE_DRY:-}
NOTEBOOKS=${LEASE_NOTEBOOKS-01 02 03 04 05 06 07 08}  # set but empty: none
TESTS=${LEASE_TESTS:-tests}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0

step() {  # step NAME LIMIT COMMAND...: run with a time limit, log to $OUT/NAME.txt, record status and time
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    timeout -k 5 "$limit" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    [ "$rc" -eq 0 ] || status=1
    printf '%-24s rc %-3s %5d s\n' "$name" "$rc" $((SECONDS - started)) | tee -a "$OUT/summary.txt"
}

{
    date -u
    nvidia-smi -L 2>&1 || echo "no nvidia-smi"
    "$PY" -c 'import sys, torch, numpy, scipy; print(sys.version.split()[0], "torch", torch.__version__,
"numpy", numpy.__version__, "scipy", scipy.__version__, "cuda", torch.cuda.is_available())'
    nproc
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if [ -n "${LEASE_SKIP_BENCH:-}" ]; then  # a second, shorter run: only the checks named here
    # shellcheck disable=SC2086  # LEASE_CHECK_ARGS is a list of options
    [ -z "${LEASE_CHECK_ARGS:-}" ] || step device_check 120 "$PY" benchmarks/device_check.py $LEASE_CHECK_ARGS
elif [ -n "$DRY" ]; then
    step bench_training 300 "$PY" benchmarks/training.py --steps 20 --repeats 1
    step bench_network_jacobian 300 "$PY" benchmarks/network_jacobian.py
    step device_check 300 "$PY" benchmarks/device_check.py --quick
else
    step bench_training 80 "$PY" benchmarks/training.py --steps 200 --repeats 2
    step bench_network_jacobian 80 "$PY" benchmarks/network_jacobian.py
    step device_check 200 "$PY" benchmarks/device_check.py
fi

# The notebooks as scripts of their code cells (no nbformat there: the files are JSON). They run through
# `python -c`, as in a kernel: a main module without a file, which the workers that chapters 5 and 8 spawn
# do not re-import. Each gets 4 BLAS threads (16 cores, 8 notebooks and the tests side by side).
for nb in $NOTEBOOKS; do
    "$PY" - "$nb" "$work" 2>"$work/nb$nb.log" <<'EOF'
import glob, json, sys
number, work = sys.argv[1], sys.argv[2]
(path,) = glob.glob(f"book/{number}_*.ipynb")
cells = json.load(open(path))["cells"]
code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
open(f"{work}/nb{number}.py", "w").write("\n\n".join(code) + "\n")
EOF
done
started=$SECONDS
run_notebook='import sys; exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"))'
for nb in $NOTEBOOKS; do
    (cd book && DIFFNB_SCALE=quick OMP_NUM_THREADS=4 timeout -k 5 "${LEASE_NOTEBOOK_LIMIT:-210}" \
        "$PY" -c "$run_notebook" "$work/nb$nb.py" >>"$work/nb$nb.log" 2>&1
        echo "rc $? in $((SECONDS - started)) s" >>"$work/nb$nb.log") &
done
if [ "$TESTS" != none ]; then
    # shellcheck disable=SC2086  # TESTS and LEASE_PYTEST_ARGS are lists
    step unit_tests 210 "$PY" -m pytest $TESTS -q -rfE --continue-on-collection-errors -p no:cacheprovider \
        ${LEASE_PYTEST_ARGS:--n 6 --timeout 200}
fi
wait
for nb in $NOTEBOOKS; do
    last=$(tail -n 1 "$work/nb$nb.log")
    case $last in "rc 0 "*) ;; *) status=1 ;; esac
    printf '%-24s %s\n' "notebook $nb" "$last" | tee -a "$OUT/summary.txt"
    { echo "===== notebook $nb"; tail -n 60 "$work/nb$nb.log"; } >>"$OUT/notebooks.txt"
done
exit $status
