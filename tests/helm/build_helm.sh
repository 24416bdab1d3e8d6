#!/usr/bin/env bash
# Build the `helm` CLI from the Go module proxy (no binary download) into
#
#   ${SPIDERWEB_LAB_CACHE:-/var/cache/spiderweb-lab}/bin/helm
#
# tests/helm/test_chart.py uses it for `helm lint` and `helm template` when it exists (or when $SPIDERWEB_HELM
# points at another helm), and skips only those tests otherwise. GOMODCACHE and GOCACHE are shared with
# tests/lab/build.sh so the Kubernetes modules the two builds have in common are downloaded and compiled once.
#
# Idempotent: exits at once when a binary built by this recipe and version exists. `--rebuild` forces a build.
# The last line of stdout is the path of the binary.
set -euo pipefail

main() {
    HELM_VERSION=v3.22.0   # helm.sh/helm/v3; bump deliberately, the chart is tested against this version
    CACHE=${SPIDERWEB_LAB_CACHE:-/var/cache/spiderweb-lab}
    BIN=$CACHE/bin
    OUT=$BIN/helm

    export GOMODCACHE=$CACHE/gomod
    export GOCACHE=$CACHE/gocache
    export GOTOOLCHAIN=local        # fail loudly rather than fetch another toolchain
    export CGO_ENABLED=0
    export GOFLAGS="-p=2 -buildvcs=false"
    export GOBIN=$BIN
    mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"

    RECIPE=2   # bump when the build flags below change
    STAMP=$BIN/.helm-build
    if [[ ${1:-} != --rebuild && -x $OUT && "$(cat "$STAMP" 2>/dev/null)" == "$HELM_VERSION recipe=$RECIPE" ]]; then
        echo "$OUT"
        return 0
    fi

    # Stamp versions the way helm's Makefile does: `helm version`/.Capabilities.HelmVersion, and the Kubernetes
    # version `helm template`/`helm lint` assume (.Capabilities.KubeVersion, deprecation checks), which upstream
    # derives from the k8s.io/client-go it is built with. Without it helm assumes Kubernetes 1.20.
    local modfile k8s_minor
    modfile=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    k8s_minor=$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$modfile")
    [[ -n $k8s_minor ]] || { echo "[helm-build] cannot read k8s.io/client-go from $modfile" >&2; exit 1; }
    local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    local pkg
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
    done
    local start=$SECONDS
    echo "[helm-build] go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION -> $OUT" >&2
    go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    echo "$HELM_VERSION recipe=$RECIPE" > "$STAMP"
    echo "[helm-build] done in $((SECONDS - start))s: $("$OUT" version --short), Kubernetes 1.$k8s_minor assumed" >&2
    echo "$OUT"
}

main "$@"
