#!/usr/bin/env bash
# Build Whereabouts (the IPAM `make bench-storm` compares with) from the pinned wrapper module tests/lab/go/whereabouts:
# its CNI plugin (`cmd`, installed as `whereabouts`) and its reconciler (`cmd/controlloop`, as `whereabouts-controlloop`),
# plus its CRDs copied from the module source, into a cache directory OUTSIDE the repo:
#
#   ${SPIDERWEB_LAB_CACHE:-/var/cache/spiderweb-lab}/whereabouts-<key>/{bin,crds}
#
# Kept apart from build.sh (own key, own .complete) so that `make test`'s cold build never pays for it. Same cache
# (GOMODCACHE, GOCACHE, lock) and flags as build.sh. Idempotent; --rebuild rebuilds, --bin-dir prints the bin directory
# and exits 0 if it is built, 1 if not (never builds). The last line of stdout is always the bin directory.
set -euo pipefail

main() {
    LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    CACHE=${SPIDERWEB_LAB_CACHE:-/var/cache/spiderweb-lab}
    MOD_DIR=$LAB_DIR/go/whereabouts
    RECIPE=1   # bump when the build flags below change
    REBUILD=0 QUERY=0
    case ${1:-} in
        --rebuild) REBUILD=1 ;;
        --bin-dir) QUERY=1 ;;
        "") ;;
        *) echo "usage: $0 [--rebuild|--bin-dir]" >&2; exit 2 ;;
    esac

    export GOMODCACHE=$CACHE/gomod
    export GOCACHE=$CACHE/gocache
    export GOTOOLCHAIN=local
    export CGO_ENABLED=0
    export GOFLAGS="-p=2 -mod=readonly -buildvcs=false"
    mkdir -p "$GOMODCACHE" "$GOCACHE"

    log() { printf '[lab-build %(%H:%M:%S)T] %s\n' -1 "$*"; }

    MODULE=github.com/k8snetworkplumbingwg/whereabouts
    WB_VER=$(cd "$MOD_DIR" && go list -m -f '{{.Version}}' "$MODULE")
    GOVER=$(go env GOVERSION)
    KEY=$( {
        echo "recipe=$RECIPE go=$GOVER whereabouts=$WB_VER"
        cat "$MOD_DIR/go.mod" "$MOD_DIR/go.sum"
    } | sha256sum | cut -c1-16)
    OUT=$CACHE/whereabouts-$KEY
    BIN=$OUT/bin
    if [[ $QUERY == 1 ]]; then
        echo "$BIN"
        [[ -f $BIN/.complete ]]
        exit
    fi
    mkdir -p "$BIN" "$OUT/crds"

    exec 9>"$CACHE/.build.lock"
    flock 9

    if [[ -f $BIN/.complete && $REBUILD == 0 ]]; then
        log "cache hit: $BIN (whereabouts $WB_VER)"
        echo "$BIN"
        exit 0
    fi
    rm -f "$BIN/.complete"
    log "building whereabouts $WB_VER ($GOVER) into $BIN"
    T0=$SECONDS
    cd "$MOD_DIR"
    nice -n 10 go mod download
    LD="-s -w -X $MODULE/pkg/version.Version=$WB_VER"
    nice -n 10 go build -trimpath -ldflags "$LD" -o "$BIN/whereabouts" "$MODULE/cmd"
    nice -n 10 go build -trimpath -ldflags "$LD" -o "$BIN/whereabouts-controlloop" "$MODULE/cmd/controlloop"
    SRC=$(go list -m -f '{{.Dir}}' "$MODULE")
    cp "$SRC"/doc/crds/whereabouts.cni.cncf.io_*.yaml "$OUT/crds/"
    chmod u+w "$OUT"/crds/*.yaml
    echo "total=$((SECONDS - T0))s whereabouts=$WB_VER go=$GOVER date=$(date -u +%FT%TZ)" >>"$OUT/build-times.txt"
    touch "$BIN/.complete"
    log "built in $((SECONDS - T0))s: $(cd "$BIN" && du -h -- * | tr '\n\t' '  ')"
    echo "$BIN"
}

main "$@"
exit
