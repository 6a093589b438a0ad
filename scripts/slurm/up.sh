#!/usr/bin/env bash
# A real Slurm 22.05 cluster on this one Debian machine, for tests and benchmarks: munge,
# slurmctld and NODES virtual slurmd nodes of 8 fake GPUs each (symlinks to /dev/null, the
# only fake device Slurm accepts), cons_tres, no cgroups (sandboxes have none). Idempotent:
# installs what is missing, starts what is not running, waits until the nodes are idle.
# Facts behind each line: ../shared/docs/slurm-on-debian.md.
#
#   scripts/slurm/up.sh        # then: sinfo, sbatch --wrap true, …
#   scripts/slurm/down.sh
set -euo pipefail
NODES=${NODES:-4}
GPUS=${GPUS:-8}
CONF=/etc/slurm
SPOOL=/var/spool/slurm

need=()
for b in slurmctld slurmd sbatch munged; do command -v "$b" >/dev/null || need+=("$b"); done
if ((${#need[@]})); then
  echo "slurm: installing slurm-wlm and munge (missing: ${need[*]})"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm slurm-client slurm-wlm-jwt-plugin munge >/dev/null
fi

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null && ! grep -q ' Z ' "/proc/$(cat "$1")/stat" 2>/dev/null; }

# munge: its key, its run folder, running as its own user.
mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
[[ -s /etc/munge/munge.key ]] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
alive /run/munge/munged.pid || su -s /bin/sh munge -c 'munged'

# Fake GPUs: /run/fakegpu/nvidia0… as symlinks to /dev/null.
mkdir -p /run/fakegpu
for ((g = 0; g < GPUS; g++)); do ln -sfn /dev/null "/run/fakegpu/nvidia$g"; done

host=$(hostname -s)
mkdir -p "$CONF" "$SPOOL/ctld" /var/log/slurm
nodes=""
for ((n = 1; n <= NODES; n++)); do
  nodes+="NodeName=node$n NodeHostname=$host NodeAddr=127.0.0.1 Port=$((17000 + n)) CPUs=16 RealMemory=64000 Gres=gpu:$GPUS State=UNKNOWN"$'\n'
  mkdir -p "$SPOOL/d-node$n"
done
cat >"$CONF/slurm.conf" <<EOF
ClusterName=fabrik
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d-%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
GresTypes=gpu
ReturnToService=2
SlurmdParameters=config_overrides
MpiDefault=none
JobCompType=jobcomp/none
MaxJobCount=1000000
${nodes}PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
cat >"$CONF/gres.conf" <<EOF
AutoDetect=off
NodeName=node[1-$NODES] Name=gpu File=/run/fakegpu/nvidia[0-$((GPUS - 1))]
EOF

alive /run/slurmctld.pid || slurmctld
for i in $(seq 1 60); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.5; done
for ((n = 1; n <= NODES; n++)); do alive "/run/slurmd-node$n.pid" || slurmd -N "node$n"; done
for i in $(seq 1 120); do
  if [[ $(sinfo -h -o '%t' | sort -u | tr -d '\n') == idle ]]; then
    echo "slurm: $NODES nodes × $GPUS GPUs idle"
    exit 0
  fi
  # A node drained by an earlier run stays drained in StateSave: give it back.
  sinfo -h -o '%N %t' | awk '$2 ~ /drain/ {print $1}' | xargs -r -I{} scontrol update nodename={} state=resume 2>/dev/null || true
  sleep 0.5
done
echo "slurm: nodes did not become idle:" >&2
sinfo >&2
exit 1
