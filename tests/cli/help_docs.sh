#!/bin/sh
# tests/cli/help_docs.sh ROAD FIXTURES - docs/cli.md says what `road <cmd> --help` says: for
# every command `road help` lists, each flag its --help shows appears in the command's section
# of docs/cli.md, and each flag the section's usage block lists exists in --help. (--help is
# printed from the command's flag table, so a flag added there and not documented fails here.)
. "$(dirname "$0")/../cli_lib.sh"
DOCS="$FIX/../../docs/cli.md"
[ -f "$DOCS" ] || { echo "no $DOCS"; exit 1; }

# flags CMD < text: the sorted set of --flags in the text
flags() { grep -o -- '--[a-z][a-z0-9-]*' | sort -u; }

# The command names: the lines of `road help` under "commands:" (help and version take no
# options).
commands=$("$ROAD" help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1} /^$/ && on {exit}' |
           grep -v -x -e help -e version)
[ -n "$commands" ] || fail "road help lists no commands"

for cmd in $commands; do
    "$ROAD" "$cmd" --help > "$TMP/help" 2>&1 || fail "road $cmd --help exited $?"
    flags < "$TMP/help" > "$TMP/help.flags"
    # The section: from a "## " heading naming "road CMD" to the next "## " heading.
    awk -v c="$cmd" '/^## / {on = ($0 ~ ("road " c "([ ,]|$)"))} on' "$DOCS" > "$TMP/section"
    if [ ! -s "$TMP/section" ]; then
        fail "docs/cli.md has no section for road $cmd"
        continue
    fi
    flags < "$TMP/section" > "$TMP/section.flags"
    # The usage block: the indented line starting "road CMD" and the indented lines under it.
    awk -v c="$cmd" '
        /^    road / {on = ($0 ~ ("^    road " c "( |$)")); if (on) print; next}
        on && /^     / {print; next}
        {on = 0}' "$TMP/section" | flags > "$TMP/usage.flags"
    [ -s "$TMP/usage.flags" ] || [ "$cmd" = inspect ] || fail "docs/cli.md: no usage block for road $cmd"
    for f in $(comm -23 "$TMP/help.flags" "$TMP/section.flags"); do
        fail "road $cmd --help lists $f, which docs/cli.md's road $cmd section does not mention"
    done
    for f in $(comm -13 "$TMP/help.flags" "$TMP/usage.flags"); do
        fail "docs/cli.md's usage of road $cmd lists $f, which road $cmd --help does not know"
    done
done
finish "help and docs/cli.md"
