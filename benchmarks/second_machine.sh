#!/usr/bin/env bash
# Issue 14's "results from at least two machines" in one command, for the day a second CPU
# is reachable: an AVX-512 machine, such as the host of a GPU machine the `device` tool lends
# (its x86-64 host is one CPU this project has never had for a whole session). It builds the
# CPU extension in place, runs the kernel and parity tests under every ISA the CPU has, then
# the issue-14 table twice on 2 threads: with the ISA auto picks and, where that is avx512,
# again with FASTRNN_CPU_ISA=avx2 (the AVX2 stand-in the issue asks for); the oneDNN peer
# where oneDNN is installed. Everything lands in OUT_DIR (default $OUT, else
# benchmarks/results/second_machine), each JSON carrying the CPU model (common.py).
#
#   bash benchmarks/second_machine.sh            # ~3 min build on 16 cores, ~8 min tests + tables
#   QUICK=1 bash benchmarks/second_machine.sh    # one row, 3 runs: checks the script itself
#
# A device machine runs one command for at most 10 minutes: there, run it as two calls,
# STAGE=test then STAGE=bench (the build is kept between calls while the machine stays warm;
# a fresh machine rebuilds).
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir="${OUT_DIR:-${OUT:-benchmarks/results/second_machine}}"
mkdir -p "$out_dir"
stage="${STAGE:-all}"
jobs="${MAX_JOBS:-$(nproc)}"
log="$out_dir/second_machine_${stage}.log"
exec > >(tee -a "$log") 2>&1

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
slug=$(echo "${cpu_model:-unknown}" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' '_' | tr -s '_' | cut -c1-40)
echo "+ $(date -u +%FT%TZ) on: ${cpu_model:-unknown} ($(nproc) CPUs)"
grep -o -w -E 'avx2|fma|avx512f|avx512bw|avx512dq|avx512vl' /proc/cpuinfo | sort -u | tr '\n' ' '
echo

if ! python -c "import torch, fastrnn._C" 2>/dev/null; then
  echo "+ building the CPU extension in place (MAX_JOBS=$jobs)"
  FASTRNN_BUILD_CUDA=0 MAX_JOBS="$jobs" python setup.py build_ext --inplace >"$out_dir/build.log" 2>&1 ||
    { tail -30 "$out_dir/build.log"; exit 1; }
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# The ISAs this CPU runs, as the extension decides (isa_supported), widest first.
isas=$(python - <<'EOF'
import os, subprocess, sys
ok = []
for isa in ("avx512", "avx2", "avx512sim", "portable"):
    env = dict(os.environ, FASTRNN_CPU_ISA=isa)
    probe = "import torch, fastrnn; torch.ops.fastrnn._cpu_fma_peak(0.001, 1)"
    if subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0:
        ok.append(isa)
print(" ".join(ok))
EOF
)
echo "+ ISAs: $isas"
auto_isa=$(python -c "import fastrnn.backends as b; print(b.cpu_machine()['isa'])")

if [ "$stage" = all ] || [ "$stage" = test ]; then
  tests="tests/test_cpu_kernels.py tests/test_parity.py tests/test_cpu_perf_paths.py"
  for isa in $isas; do
    [ -n "${QUICK:-}" ] && [ "$isa" != "$auto_isa" ] && continue
    echo "+ FASTRNN_CPU_ISA=$isa pytest $tests"
    FASTRNN_CPU_ISA=$isa python -m pytest -q -p no:cacheprovider $tests 2>&1 | tail -3
  done
fi

if [ "$stage" = all ] || [ "$stage" = bench ]; then
  args=(--repeat 9 --threads 2)
  [ -n "${QUICK:-}" ] && args=(--repeat 3 --threads 2 --shapes 0 --no-extra)
  echo "+ run.py ${args[*]} (auto: $auto_isa)"
  python benchmarks/run.py "${args[@]}" --json "$out_dir/cpu_run_${slug}_${auto_isa}_2threads.json"
  if [ "$auto_isa" = avx512 ]; then
    echo "+ FASTRNN_CPU_ISA=avx2 run.py ${args[*]} (the AVX2 stand-in)"
    FASTRNN_CPU_ISA=avx2 python benchmarks/run.py "${args[@]}" \
      --json "$out_dir/cpu_run_${slug}_avx2_2threads.json"
  fi
  if [ -z "${QUICK:-}" ]; then
    python benchmarks/onednn/run.py --threads 2 --runs 11 --out "$out_dir/onednn_${slug}_2threads.json"
  fi
fi
echo "+ done: $out_dir"
