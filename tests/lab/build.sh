#!/usr/bin/env bash
# Build the Kubernetes test-lab binaries (etcd, kube-apiserver,
# kube-controller-manager, Multus thin plugin, CNI plugins) from the pinned
# wrapper Go modules in tests/lab/go/*, into a cache directory OUTSIDE the repo:
#
#   ${SPIDERWEB_LAB_CACHE:-/var/cache/spiderweb-lab}/<key>/bin
#
# <key> hashes the pinned versions, the Go version, this recipe and the wrapper
# go.mod/go.sum files, so a machine builds each combination once and a version
# bump lands in a fresh directory. GOMODCACHE and GOCACHE live in the same cache
# root, so even a new key only pays for the packages that changed.
#
# Idempotent: if <key>/bin/.complete exists nothing is built. Use --rebuild to
# rebuild the current key (with a warm GOCACHE this measures the "warm" time).
# Build times are recorded in <key>/build-times.txt ("cold" when GOCACHE had
# never held a finished lab build, else "warm") and printed on every run.
# The last line of stdout is always the bin directory.
set -euo pipefail

# The whole script is one function so that bash parses it before running:
# editing this file while a long build runs cannot derail that build.
main() {

    LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    CACHE=${SPIDERWEB_LAB_CACHE:-/var/cache/spiderweb-lab}
    RECIPE=1   # bump when the build flags below change
    REBUILD=0 QUERY=0
    case ${1:-} in
        --rebuild) REBUILD=1 ;;
        --bin-dir) QUERY=1 ;;  # print the bin dir; exit 0 if built, 1 if not; never build
        "") ;;
        *) echo "usage: $0 [--rebuild|--bin-dir]" >&2; exit 2 ;;
    esac

    export GOMODCACHE=$CACHE/gomod
    export GOCACHE=$CACHE/gocache
    export GOTOOLCHAIN=local        # fail loudly rather than fetch another toolchain
    export CGO_ENABLED=0            # static binaries, like upstream release builds
    export GOFLAGS="-p=2 -mod=readonly -buildvcs=false"
    mkdir -p "$GOMODCACHE" "$GOCACHE"

    log() { printf '[lab-build %(%H:%M:%S)T] %s\n' -1 "$*"; }

    # Pinned versions are read from the wrapper go.mod files (single source of truth).
    modver() { (cd "$LAB_DIR/go/$1" && go list -m -f '{{.Version}}' "$2"); }
    GOVER=$(go env GOVERSION)
    K8S_VER=$(modver k8s k8s.io/kubernetes)
    ETCD_VER=$(modver etcd go.etcd.io/etcd/server/v3)
    MULTUS_VER=$(modver cni gopkg.in/k8snetworkplumbingwg/multus-cni.v4)
    CNI_VER=$(modver cni github.com/containernetworking/plugins)

    KEY=$( {
        echo "recipe=$RECIPE go=$GOVER k8s=$K8S_VER etcd=$ETCD_VER multus=$MULTUS_VER cni=$CNI_VER"
        # Named, not globbed: go/whereabouts has its own key (build-whereabouts.sh), outside `make test`'s build.
        for m in cni etcd k8s; do cat "$LAB_DIR/go/$m/go.mod"; done
        for m in cni etcd k8s; do cat "$LAB_DIR/go/$m/go.sum"; done
    } | sha256sum | cut -c1-16)
    OUT=$CACHE/$KEY
    BIN=$OUT/bin
    TIMES=$OUT/build-times.txt
    if [[ $QUERY == 1 ]]; then
        echo "$BIN"
        [[ -f $BIN/.complete ]]
        exit
    fi
    mkdir -p "$BIN"

    print_times() {
        log "versions: kubernetes $K8S_VER, etcd $ETCD_VER, multus $MULTUS_VER, cni-plugins $CNI_VER, $GOVER"
        if [[ -s $TIMES ]]; then
            for kind in cold warm; do
                line=$(grep "^$kind " "$TIMES" | tail -1 || true)
                [[ -n $line ]] && log "recorded $line"
            done
        fi
        return 0
    }

    # One build at a time per cache (pytest, make and CI may race).
    exec 9>"$CACHE/.build.lock"
    flock 9

    if [[ -f $BIN/.complete && $REBUILD == 0 ]]; then
        log "cache hit: $BIN"
        print_times
        echo "$BIN"
        exit 0
    fi

    KIND=cold
    [[ -f $GOCACHE/.spiderweb-lab-warm ]] && KIND=warm
    log "building key $KEY ($KIND GOCACHE) into $BIN"
    rm -f "$BIN/.complete"

    T0=$SECONDS
    declare -A T
    step() {  # step NAME CMD...: run CMD under nice, log and record its seconds in T[NAME]
        local name=$1; shift
        local t=$SECONDS
        log "-> $name"
        nice -n 10 "$@"
        T[$name]=$((SECONDS - t))
        log "<- $name ${T[$name]}s"
    }

    # Module download is its own step so a proxy problem is obvious in the log.
    t=$SECONDS
    log "-> download"
    for m in etcd cni k8s; do (cd "$LAB_DIR/go/$m" && nice -n 10 go mod download); done
    T[download]=$((SECONDS - t))
    log "<- download ${T[download]}s"

    cd "$LAB_DIR/go/etcd"
    step etcd go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3

    cd "$LAB_DIR/go/cni"
    step multus go build -trimpath -o "$BIN/" -ldflags "-s -w \
        -X gopkg.in/k8snetworkplumbingwg/multus-cni.v4/pkg/multus.version=$MULTUS_VER" \
        gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus
    step cni-plugins go build -trimpath -o "$BIN/" -ldflags "-s -w \
        -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_VER" \
        github.com/containernetworking/plugins/plugins/main/macvlan \
        github.com/containernetworking/plugins/plugins/main/bridge \
        github.com/containernetworking/plugins/plugins/main/loopback \
        github.com/containernetworking/plugins/plugins/ipam/host-local

    # Same version stamps as kubernetes' hack/lib/version.sh, so /version is sane.
    cd "$LAB_DIR/go/k8s"
    minor=${K8S_VER#v1.}; minor=${minor%%.*}
    LD="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        LD="$LD -X $p.gitVersion=$K8S_VER -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        LD="$LD -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    for c in kube-apiserver kube-controller-manager; do
        step "$c" go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$LD" \
            -o "$BIN/$c" "k8s.io/kubernetes/cmd/$c"
    done

    TOTAL=$((SECONDS - T0))
    parts=""
    for k in download etcd multus cni-plugins kube-apiserver kube-controller-manager; do
        parts="$parts $k=${T[$k]:-?}s"
    done
    echo "$KIND total=${TOTAL}s$parts go=$GOVER date=$(date -u +%FT%TZ)" >>"$TIMES"
    echo "$KIND key=$KEY total=${TOTAL}s$parts date=$(date -u +%FT%TZ)" >>"$CACHE/build-times.log"
    touch "$GOCACHE/.spiderweb-lab-warm" "$BIN/.complete"
    log "built in ${TOTAL}s ($KIND); sizes:"
    (cd "$BIN" && du -h -- * | sed 's/^/    /')
    print_times
    echo "$BIN"
}

main "$@"
exit
