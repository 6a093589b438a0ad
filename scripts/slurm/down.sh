#!/usr/bin/env bash
# Stops what scripts/slurm/up.sh started: the slurmd nodes, slurmctld, munged (by their pid files;
# the daemons double-fork, so their pids are not ours to wait on).
set -uo pipefail
for f in /run/slurmd-node*.pid /run/slurmctld.pid /run/munge/munged.pid; do
  [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null && echo "stopped $(basename "$f" .pid)"
done
exit 0
