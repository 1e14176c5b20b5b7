# codeact-server for Apple-silicon Macs, in a container: llama.cpp's **Vulkan** backend.
#
# Containers on macOS run in a Linux VM and cannot reach Metal. With podman's libkrun
# provider (krunkit), the VM gets a virtio-gpu whose Vulkan calls Mesa's Venus driver
# forwards to the host (virglrenderer -> MoltenVK -> Metal). This image builds llama.cpp
# for Vulkan so it uses that GPU path:
#
#   podman machine init --provider libkrun && podman machine start   # Apple silicon only
#   podman build -f Dockerfile.metal -t codeact-server:vulkan .
#   podman run --device /dev/dri -p 8000:8000 -v codeact-models:/models \
#       -e CODEACT_API_KEY=change-me codeact-server:vulkan
#
# /health then reports the backend and offloaded layers; check them. Expect less than
# native Metal speed (published figures for Venus-Vulkan: roughly 75-80 % of native).
# For best speed use the native install instead:
#   CMAKE_ARGS="-DGGML_METAL=on" make serve
# See docs/deploy.md. Linted with hadolint (`make lint-docker`); not built on the
# project's CI (no docker/podman engine, no Mac): UNVERIFIED on real hardware.

ARG FEDORA_VERSION=42

# ---------------------------------------------------------------- build stage
FROM registry.fedoraproject.org/fedora:${FEDORA_VERSION} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Packages follow the pinned Fedora release (DL3041 asks for per-package versions).
# hadolint ignore=DL3041
RUN dnf install -y --setopt=install_weak_deps=False \
        python3 python3-devel gcc gcc-c++ cmake git \
        vulkan-headers vulkan-loader-devel glslc \
    && dnf clean all

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# 1. llama-cpp-python with the Vulkan backend, in its own layer. The pin must equal
#    pyproject.toml's, or step 2 would replace this build (tests/test_runtime_install.py checks).
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36
RUN CMAKE_ARGS="-DGGML_VULKAN=on -DGGML_NATIVE=OFF" \
    pip install "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}"

# 2. The other dependencies: pyproject.toml's [project].dependencies, as `make serve` installs.
COPY pyproject.toml /src/pyproject.toml
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# 3. The project itself.
COPY README.md /src/README.md
COPY server /src/server
COPY models /src/models
COPY sandbox /src/sandbox
# 4. With it, the sandbox environment agent code runs in: a venv of its own, apart from the
#    server's packages, with sandbox/requirements-sandbox.txt (numpy, pandas, scipy,
#    matplotlib, scikit-learn, ...). serve refuses to start without it.
RUN pip install --no-deps /src \
    && codeact-server sandbox setup --sandbox-env /opt/sandbox-env

# ---------------------------------------------------------------- runtime stage
FROM registry.fedoraproject.org/fedora:${FEDORA_VERSION}

# mesa-vulkan-drivers carries Venus (the virtio-gpu Vulkan driver the krunkit VM exposes);
# vulkan-loader: libvulkan; bubblewrap: namespace isolation of agent code.
# hadolint ignore=DL3041
RUN dnf install -y --setopt=install_weak_deps=False \
        python3 bubblewrap libgomp vulkan-loader mesa-vulkan-drivers \
    && dnf clean all \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin codeact \
    && mkdir -p /models \
    && chown codeact:codeact /models

COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/sandbox-env /opt/sandbox-env

ENV PATH=/opt/venv/bin:$PATH \
    CODEACT_SANDBOX_ISOLATION=landlock \
    CODEACT_SANDBOX_ENV=/opt/sandbox-env \
    HF_HOME=/models \
    CODEACT_PORT=8000 \
    PYTHONUNBUFFERED=1
VOLUME ["/models"]
USER 10001:10001
WORKDIR /home/codeact
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CODEACT_PORT', '8000'), timeout=4)"]

# Binding 0.0.0.0 requires an API key: pass -e CODEACT_API_KEY=... (or --api-key-file).
# Clients that reach it by a name other than localhost: -e CODEACT_ALLOWED_HOST=name,...
CMD ["codeact-server", "serve", "--host", "0.0.0.0"]
