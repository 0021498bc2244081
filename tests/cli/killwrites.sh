#!/bin/sh
# tests/cli/killwrites.sh ROAD FIXTURES - the short form of tests/robust/kill_writes.sh: 9
# rounds of kill -9 during road merge / init / train (a few seconds), and the full-disk check
# where mount is permitted. Run the script itself for more rounds.
exec sh "$(dirname "$0")/../robust/kill_writes.sh" "$1" "$2" 9
