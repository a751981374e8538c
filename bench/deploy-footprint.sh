#!/bin/bash
# Peak RSS and CPU of the controller and of one of five agents while a 2 MiB
# package is deployed to all five, measured with /usr/bin/time -v.
# Usage: bench/deploy-footprint.sh [BIN_DIR]   (default target/release)
set -e
B=$(realpath "${1:-target/release}")
work=$(mktemp -d); cd "$work"
$B/flotte-controller init --data-dir d --listen 127.0.0.1:17555 --hostname localhost --hostname 127.0.0.1 --admin-config $work/ctl.toml >/dev/null
export FLOTTE_CONFIG=$work/ctl.toml
/usr/bin/time -v -o ctl.time $B/flotte-controller run --data-dir d > ctl.out 2> ctl.log &
until [ -s ctl.out ]; do sleep 0.05; done
$B/flottectl trust init --dir keys >/dev/null
for i in 1 2 3 4 5; do
  T=$($B/flottectl agents token --json | python3 -c "import json,sys;print(json.load(sys.stdin)['token'])")
  $B/flotte-agent enroll --controller 127.0.0.1:17555 --token $T --ca d/ca.crt --trust-root keys/root.json --state-dir a$i/state --hostname m-$i >/dev/null
done
for i in 2 3 4 5; do $B/flotte-agent run --state-dir a$i/state --root a$i/root 2>a$i.log & done
/usr/bin/time -v -o a1.time $B/flotte-agent run --state-dir a1/state --root a1/root 2>a1.log &
mkdir -p pkg && head -c 2097152 /dev/urandom > pkg/blob && tar czf app.tar.gz -C pkg .
until [ "$($B/flottectl agents list --json | python3 -c "import json,sys;print(sum(a['online'] for a in json.load(sys.stdin)))")" = 5 ]; do sleep 0.05; done
$B/flottectl package publish app.tar.gz --name app --version 1.0.0 --key keys/targets.key
$B/flottectl deploy app@1.0.0 --to all
until [ "$($B/flottectl status --json | python3 -c "import json,sys;print(sum(1 for a in json.load(sys.stdin) if a['state']=='succeeded'))")" = 5 ]; do sleep 0.1; done
$B/flottectl status
pkill -TERM -f "^$B/flotte-agent run" || true
pkill -TERM -f "^$B/flotte-controller run" || true
wait
grep -E "Maximum resident|User time|System time" ctl.time a1.time
