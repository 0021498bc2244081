#!/bin/sh
# tests/install/run.sh CMAKE BUILD_DIR WORK_DIR CC - ctest `install`.
#
# Installs the build into WORK_DIR/prefix (cmake --install --prefix, as a packager would), then
# builds and runs small programs against the installed tree, both ways a user would:
#   pkg-config   kernels.c with road-core, adapters.c with road, serve.c with road-serve, and
#                serve.c statically with `pkg-config --static` (checks Requires/Libs.private);
#   find_package the project in consumer/ (road::core, road::core_static, road::road,
#                road::serve_static).
# and checks what each program loads: road-core programs load neither PCRE2 nor libmicrohttpd,
# road programs no libmicrohttpd, static ones no libroad*. Skips (77) without pkg-config,
# readelf or a C compiler.
set -eu

CMAKE=$1
BUILD=$2
WORK=$3
CC=$4
HERE=$(cd "$(dirname "$0")" && pwd)

for tool in pkg-config readelf "$CC"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: $tool not found"
        exit 77
    fi
done

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

rm -rf "$WORK"
mkdir -p "$WORK"
PREFIX=$WORK/prefix
"$CMAKE" --install "$BUILD" --prefix "$PREFIX" >"$WORK/install.log" ||
    fail "cmake --install (see $WORK/install.log)"
PCFILE=$(find "$PREFIX" -name road-core.pc)
[ -n "$PCFILE" ] || fail "no road-core.pc under $PREFIX"
PCDIR=$(dirname "$PCFILE")
LIBDIR=$(dirname "$PCDIR")
for f in "$PREFIX/include/road/road.h" "$LIBDIR/cmake/road/roadConfig.cmake" \
    "$LIBDIR/cmake/road/roadConfigVersion.cmake" "$PCDIR/road.pc" "$PCDIR/road-serve.pc" \
    "$LIBDIR/libroad-core.a" "$LIBDIR/libroad.a" "$LIBDIR/libroad-serve.a"; do
    [ -f "$f" ] || fail "not installed: $f"
done
# The system's own .pc files (openblas, cJSON, ...) stay on the search path.
PKG_CONFIG_PATH=$PCDIR${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_PATH

# needed PROGRAM: the shared libraries PROGRAM loads: its own NEEDED entries and those of the
# road libraries among them (road's libraries name every dependency directly).
needed() {
    list=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p')
    for lib in $list; do
        case $lib in
        libroad*) readelf -d "$LIBDIR/$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p' ;;
        esac
    done
    echo "$list"
}

# check PROGRAM MUST_LOAD MUST_NOT_LOAD: run it and check what it loads (patterns for grep -E;
# "-" for none).
check() {
    out=$("$1") || fail "$(basename "$1") failed: $out"
    echo "$(basename "$1"): $out"
    libs=$(needed "$1")
    if [ "$2" != - ] && ! echo "$libs" | grep -Eq "$2"; then
        fail "$(basename "$1") does not load $2; it loads: $(echo $libs)"
    fi
    if [ "$3" != - ] && echo "$libs" | grep -Eq "$3"; then
        fail "$(basename "$1") loads $(echo "$libs" | grep -E "$3" | tr '\n' ' ')(it must not)"
    fi
}

# ---- pkg-config ----------------------------------------------------------------------------
# build_pc OUT SOURCE PACKAGE: a shared link, found at run time through an rpath.
build_pc() {
    # shellcheck disable=SC2046 # pkg-config's output is a list of words
    "$CC" -o "$WORK/$1" "$HERE/$2" $(pkg-config --cflags --libs "$3") -lm \
        -Wl,-rpath,"$LIBDIR" || fail "building $2 with pkg-config $3"
}
build_pc kernels_pc kernels.c road-core
build_pc adapters_pc adapters.c road
build_pc serve_pc serve.c road-serve
# A static link of the whole library: libroad-serve.a itself, everything else from the .pc file.
LIBS=$(pkg-config --static --libs road-serve | sed 's/-lroad-serve/-Wl,-Bstatic -lroad-serve -Wl,-Bdynamic/')
# shellcheck disable=SC2046,SC2086
"$CC" -o "$WORK/serve_pc_static" "$HERE/serve.c" $(pkg-config --cflags road-serve) $LIBS ||
    fail "building serve.c with pkg-config --static road-serve"

check "$WORK/kernels_pc" 'libroad-core\.so' 'pcre2|microhttpd|libroad\.so|libroad-serve'
check "$WORK/adapters_pc" 'libroad\.so' 'microhttpd|libroad-'
check "$WORK/serve_pc" 'libroad-serve\.so' -
check "$WORK/serve_pc_static" - 'libroad'

# ---- find_package(road) --------------------------------------------------------------------
"$CMAKE" -S "$HERE/consumer" -B "$WORK/consumer" -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=Release >"$WORK/consumer.log" 2>&1 ||
    fail "configuring tests/install/consumer (see $WORK/consumer.log)"
"$CMAKE" --build "$WORK/consumer" --parallel 2 >>"$WORK/consumer.log" 2>&1 ||
    fail "building tests/install/consumer (see $WORK/consumer.log)"

check "$WORK/consumer/kernels" 'libroad-core\.so' 'pcre2|microhttpd|libroad\.so|libroad-serve'
check "$WORK/consumer/kernels_static" - 'libroad|pcre2|microhttpd'
check "$WORK/consumer/adapters" 'libroad\.so' 'microhttpd|libroad-'
check "$WORK/consumer/serve_static" - 'libroad'
echo "install: ok"
