#!/usr/bin/env bash
# Issue 14's "results from at least two machines" in one command, for the day a second CPU
# is reachable: an AVX-512 machine, such as the host of a GPU machine the `device` tool lends
# (its x86-64 host is one CPU this project has never had for a whole session). It builds the
# CPU extension in place, runs the kernel and path tests (which sweep every ISA the CPU has
# themselves) and the parity tests under each such ISA, then the issue-14 table on 2 threads:
# with the ISA auto picks and, where that is avx512, again as the AVX2 stand-in (fastrnn on
# FASTRNN_CPU_ISA=avx2, torch's own kernels and BLAS held to AVX2 too); the oneDNN peer where
# oneDNN is installed. Everything lands in OUT_DIR (default $OUT, else
# benchmarks/results/second_machine), each JSON carrying the CPU model (common.py).
#
#   bash benchmarks/second_machine.sh            # ~3 min build on 16 cores, ~6 min tests + tables
#   QUICK=1 bash benchmarks/second_machine.sh    # one row, one ISA: checks the script itself
#
# A device machine runs one command for at most 10 minutes: there, STAGE=test and then
# STAGE=bench split it (a machine given back in between rebuilds: ninja, ~3 min).
# PYTHON names the interpreter that holds torch (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

stage="${STAGE:-all}"
case "$stage" in all|test|bench) ;; *) echo "STAGE=all|test|bench, got '$stage'" >&2; exit 2;; esac
quick=0; [ "${QUICK:-0}" = 1 ] && quick=1
py="${PYTHON:-python3}"
out_dir="${OUT_DIR:-${OUT:-benchmarks/results/second_machine}}"
mkdir -p "$out_dir"
jobs="${MAX_JOBS:-$(nproc)}"

# CPU only: on a GPU host the parity tests would otherwise add their CUDA cases (Triton,
# through this CPU-only build). A caller's FASTRNN_CPU_* would bend "auto" below.
export CUDA_VISIBLE_DEVICES=
unset FASTRNN_CPU_ISA FASTRNN_CPU_PATH FASTRNN_CPU_GEMM
export PYTHONUNBUFFERED=1
exec > >(tee -a "$out_dir/second_machine_${stage}.log") 2>&1
tee_pid=$!
trap 'status=$?; [ $status = 0 ] || echo "+ failed (exit $status)"
      exec >&- 2>&-; wait $tee_pid' EXIT

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
slug=$(echo "${cpu_model:-unknown}" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' '_' | tr -s '_' |
       sed 's/^_//; s/_$//' | cut -c1-40)
echo "+ $(date -u +%FT%TZ) on: ${cpu_model:-unknown} ($(nproc) CPUs)"
{ grep -o -w -E 'avx2|fma|avx512f|avx512bw|avx512dq|avx512vl' /proc/cpuinfo || true; } |
  sort -u | tr '\n' ' '
echo

# Always: ninja makes an up-to-date build cheap, and a warm machine's old .so must not stay.
echo "+ building the CPU extension in place (MAX_JOBS=$jobs)"
FASTRNN_BUILD_CUDA=0 MAX_JOBS="$jobs" "$py" setup.py build_ext --inplace \
  >"$out_dir/build.log" 2>&1 || { tail -30 "$out_dir/build.log"; exit 1; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# The ISAs this CPU runs, as the extension decides (isa_supported), widest first; a probe
# that fails says why.
isas=$("$py" - <<'EOF'
import os, subprocess, sys
ok = []
for isa in ("avx512", "avx2", "avx512sim", "portable"):
    env = dict(os.environ, FASTRNN_CPU_ISA=isa)
    probe = "import torch, fastrnn; torch.ops.fastrnn._cpu_fma_peak(0.001, 1)"
    run = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    if run.returncode == 0:
        ok.append(isa)
    else:
        why = (run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[-1]
        print(f"+ {isa}: not here ({why[:160]})", file=sys.stderr)
print(" ".join(ok))
EOF
)
echo "+ ISAs: $isas"
auto_isa=$("$py" -c "import fastrnn.backends as b; print(b.cpu_machine()['isa'])")

failed=""
run_tests() {  # run_tests NAME [VAR=VALUE ...] -- FILES...: one log per run, failures noted
  local name=$1; shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  echo "+ ${envs[*]} pytest $*"
  env "${envs[@]}" "$py" -m pytest -q -p no:cacheprovider "$@" >"$out_dir/pytest_$name.log" 2>&1 ||
    failed="$failed $name"
  tail -3 "$out_dir/pytest_$name.log"
}

if [ "$stage" != bench ]; then
  # These sweep every ISA the CPU has (tests/cpu_matrix.py) whatever FASTRNN_CPU_ISA says.
  [ $quick = 1 ] || run_tests sweep -- tests/test_cpu_kernels.py tests/test_cpu_perf_paths.py
  for isa in $isas; do
    [ $quick = 1 ] && [ "$isa" != "$auto_isa" ] && continue
    run_tests "parity_$isa" "FASTRNN_CPU_ISA=$isa" -- tests/test_parity.py tests/test_ops.py
  done
fi

if [ "$stage" != test ]; then
  args=(--repeat 9 --threads 2)
  [ $quick = 1 ] && args=(--repeat 3 --threads 2 --shapes 0 --no-extra)
  echo "+ run.py ${args[*]} (auto: $auto_isa)"
  "$py" benchmarks/run.py "${args[@]}" --json "$out_dir/cpu_run_${slug}_${auto_isa}_2threads.json"
  if [ "$auto_isa" = avx512 ]; then
    # As an AVX2 machine would run both sides: nn.RNN's MKL / oneDNN and ATen's kernels too.
    stand_in=(FASTRNN_CPU_ISA=avx2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2
              ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell)
    echo "+ ${stand_in[*]} run.py ${args[*]} (the AVX2 stand-in)"
    env "${stand_in[@]}" "$py" -c "import torch; print('+ torch CPU capability:',
      torch.backends.cpu.get_cpu_capability())"
    env "${stand_in[@]}" "$py" benchmarks/run.py "${args[@]}" \
      --json "$out_dir/cpu_run_${slug}_avx2_standin_2threads.json"
  fi
  if [ $quick = 0 ]; then
    "$py" benchmarks/onednn/run.py --threads 2 --runs 11 \
      --out "$out_dir/onednn_${slug}_2threads.json"
  fi
fi

if [ -n "$failed" ]; then
  echo "+ tests failed:$failed (logs: $out_dir/pytest_*.log)"
  exit 1
fi
echo "+ done: $out_dir"
