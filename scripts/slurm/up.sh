#!/usr/bin/env bash
# A real Slurm 22.05 cluster on this one Debian machine, for tests and benchmarks: munge,
# slurmdbd on the machine's MariaDB (accounting: sacct, accounts, GPU limits), slurmctld, NODES
# virtual slurmd nodes of 8 fake GPUs each (symlinks to /dev/null, the only fake device Slurm
# accepts), and slurmrestd with JWT on 127.0.0.1:6820. cons_tres, no cgroups (sandboxes have
# none). Idempotent: installs what is missing, starts what is not running, waits until the nodes
# are idle. Facts behind each line: ../shared/docs/slurm-on-debian.md.
#
# The JWT key (what Fabrik signs slurmrestd tokens with) is $SPOOL/ctld/jwt_hs256.key.
#
#   scripts/slurm/up.sh        # then: sinfo, sbatch --wrap true, …
#   scripts/slurm/down.sh
set -euo pipefail
NODES=${NODES:-4}
GPUS=${GPUS:-8}
CONF=/etc/slurm
SPOOL=/var/spool/slurm

DB_PASS=${SLURM_DB_PASS:-fabrik-slurmdbd}
REST=127.0.0.1:6820
JWT_KEY=$SPOOL/ctld/jwt_hs256.key

need=()
for b in slurmctld slurmd sbatch munged slurmdbd slurmrestd sacctmgr; do command -v "$b" >/dev/null || need+=("$b"); done
if ((${#need[@]})); then
  echo "slurm: installing Slurm and munge (missing: ${need[*]})"
  # slurm-wlm-jwt-plugin is only recommended, and slurmdbd dies without it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm slurm-client slurm-wlm-jwt-plugin slurmrestd slurmdbd munge >/dev/null
fi

# Writes stdin to $1 when it differs, and remembers that it changed: a running daemon must reread it.
changed=" "
put() {
  local tmp
  tmp=$(mktemp)
  cat >"$tmp"
  cmp -s "$tmp" "$1" || { cat "$tmp" >"$1" && changed+="$(basename "$1") "; }
  rm -f "$tmp"
}

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
chmod 755 /var/log/slurm
[[ -s $JWT_KEY ]] || dd if=/dev/urandom bs=32 count=1 of="$JWT_KEY" 2>/dev/null
chmod 600 "$JWT_KEY"

# Accounting: slurmdbd on MariaDB (already running on these machines).
mysql -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
put "$CONF/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
DbdHost=localhost
SlurmUser=root
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
TrackWCKey=yes
# sacct and sshare read here: a member sees its own jobs and usage only (slurm.conf says the same).
PrivateData=accounts,events,jobs,reservations,usage,users
EOF
chmod 600 "$CONF/slurmdbd.conf"
if alive /run/slurmdbd.pid && [[ $changed == *" slurmdbd.conf "* ]]; then
  kill "$(cat /run/slurmdbd.pid)"
  for i in $(seq 1 40); do alive /run/slurmdbd.pid || break; sleep 0.25; done
fi
alive /run/slurmdbd.pid || slurmdbd
for i in $(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/6819) 2>/dev/null && break; sleep 0.5; done
sacctmgr -i -Q add cluster fabrik >/dev/null 2>&1 || true
# Each node carries its own name as a feature: slurmrestd v0.0.38 disables `required_nodes`, so the
# slurm executor pins a job to the nodes Fabrik chose with `constraints: node2|node4`.
nodes=""
for ((n = 1; n <= NODES; n++)); do
  nodes+="NodeName=node$n NodeHostname=$host NodeAddr=127.0.0.1 Port=$((17000 + n)) CPUs=16 RealMemory=64000 Gres=gpu:$GPUS Features=node$n State=UNKNOWN"$'\n'
  mkdir -p "$SPOOL/d-node$n"
done
put "$CONF/slurm.conf" <<EOF
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
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageTRES=gres/gpu
AccountingStorageEnforce=associations,limits,qos
JobAcctGatherType=jobacct_gather/none
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
ReturnToService=2
SlurmdParameters=config_overrides
MpiDefault=none
JobCompType=jobcomp/none
# Fabrik charges a job to its member's account and names its project as the wckey.
TrackWCKey=yes
# Members are competitors: a job (or a member's login) must not list other members' jobs, users,
# accounts or usage with squeue, scontrol, sacct or sshare. Fabrik reads as SlurmUser and sees all.
PrivateData=accounts,events,jobs,reservations,usage,users
MaxJobCount=1000000
${nodes}PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
put "$CONF/gres.conf" <<EOF
AutoDetect=off
NodeName=node[1-$NODES] Name=gpu File=/run/fakegpu/nvidia[0-$((GPUS - 1))]
EOF

if alive /run/slurmctld.pid && [[ $changed == *" slurm.conf "* || $changed == *" gres.conf "* ]]; then
  scontrol reconfigure
fi
alive /run/slurmctld.pid || slurmctld
for i in $(seq 1 60); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.5; done
for ((n = 1; n <= NODES; n++)); do alive "/run/slurmd-node$n.pid" || slurmd -N "node$n"; done
# slurmrestd refuses to run as root: a user of its own, and SLURM_JWT=daemon or every token is refused.
id slurmrest >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin slurmrest
touch /var/log/slurm/slurmrestd.log && chown slurmrest /var/log/slurm/slurmrestd.log
# It runs from / : started from a checkout that is later deleted (a CI clone), it fails every
# job submission with "getcwd failed" and exits.
if ! pgrep -x slurmrestd >/dev/null; then
  su -s /bin/sh slurmrest -c "cd / && SLURM_JWT=daemon nohup slurmrestd -a rest_auth/jwt -s openapi/v0.0.38,openapi/dbv0.0.38 $REST >/var/log/slurm/slurmrestd.log 2>&1 &"
fi
for i in $(seq 1 120); do
  if [[ $(sinfo -h -o '%t' | sort -u | tr -d '\n') == idle ]] && (exec 3<>/dev/tcp/${REST%:*}/${REST#*:}) 2>/dev/null; then
    echo "slurm: $NODES nodes × $GPUS GPUs idle; slurmrestd on http://$REST; JWT key $JWT_KEY"
    exit 0
  fi
  # A node drained by an earlier run stays drained in StateSave: give it back.
  sinfo -h -o '%N %t' | awk '$2 ~ /drain/ {print $1}' | xargs -r -I{} scontrol update nodename={} state=resume 2>/dev/null || true
  sleep 0.5
done
echo "slurm: nodes did not become idle:" >&2
sinfo >&2
exit 1
