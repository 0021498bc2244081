#!/bin/sh
# tests/check_symbols.sh INCLUDE_DIR STATIC_LIB... [-- SHARED_LIB...] - the naming rule for the
# names road's libraries define (docs/architecture.md, "Names"):
#   - every global symbol a static library defines starts with road_: a program linking
#     libroad*.a statically never collides with road's internals;
#   - road_x (one underscore) is public: declared with ROAD_API in include/road/; internal
#     names shared between road's files are road__x (two underscores, as libuv's uv__);
#   - a shared library exports the public names only (no road__).
# Prints every offending name with its library; exit 1 if any.
set -eu
INC="$1"
shift
public=$(mktemp)
out=$(mktemp)
trap 'rm -f "$public" "$out"' EXIT
# every function the public headers declare with ROAD_API
cat "$INC"/road/*.h | tr '\n' ' ' | grep -o 'ROAD_API[^;(]*(' |
    sed 's/.*[^A-Za-z0-9_]\(road_[A-Za-z0-9_]*\)[[:space:]]*($/\1/' | sort -u >"$public"
shared=0
for lib in "$@"; do
    if [ "$lib" = "--" ]; then
        shared=1
        continue
    fi
    if [ "$shared" = 0 ]; then
        syms=$(nm -g --defined-only "$lib" | awk 'NF == 3 && $2 ~ /^[TDBRCVW]$/ {print $3}' | sort -u)
    else
        syms=$(nm -D --defined-only "$lib" | awk 'NF == 3 && $2 ~ /^[TDBRCVW]$/ {print $3}' | sort -u)
    fi
    for s in $syms; do
        {
        case "$s" in
        .gomp_critical_user_road_*) ;; # an OpenMP named critical section, named after road's
        __odr_asan.*) ;;               # AddressSanitizer's one-definition-rule markers
        road__*)
            if [ "$shared" = 1 ]; then
                echo "$(basename "$lib"): exports internal $s (internal names are not ROAD_API)"
            fi
            ;;
        road_*)
            if ! grep -qx "$s" "$public"; then
                echo "$s is not declared in include/road/: make it static, or name it road__${s#road_} (internal)"
            fi
            ;;
        *)
            if [ "$shared" = 0 ]; then
                echo "$s does not start with road_: make it static, or name it road__$s (internal)"
            fi
            ;;
        esac
        } >>"$out"
    done
done
# a static library holds the ones below it: each name once
sort -u "$out"
if [ -s "$out" ]; then exit 1; fi
echo "symbols: every defined name follows the rule"
