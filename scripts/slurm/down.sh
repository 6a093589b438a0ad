#!/usr/bin/env bash
# Stops what scripts/slurm/up.sh started: slurmrestd, the slurmd nodes, slurmctld, slurmdbd and
# munged (by their pid files: the daemons double-fork, so their pids are not ours to wait on).
set -uo pipefail
pkill -x slurmrestd && echo "stopped slurmrestd"
for f in /run/slurmd-node*.pid /run/slurmctld.pid /run/slurmdbd.pid /run/munge/munged.pid; do
  [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null && echo "stopped $(basename "$f" .pid)"
done
exit 0
