#!/usr/bin/env bash
# A real two-node SLURM cluster on this machine (loopback only), for the launch tests.
#
#   slurm_cluster.sh start DIR [CPUS_PER_NODE]   install Debian's slurmctld/slurmd/slurm-client/munge
#                                                if missing, start munged, slurmctld and slurmd n1, n2
#                                                with all state under DIR; prints SLURM_CONF=<DIR>/slurm.conf
#   slurm_cluster.sh stop DIR                    end those daemons by their pid files
#
# Facts it relies on (SLURM 22.05, Debian 12): every client and daemon needs SLURM_CONF;
# munge's socket is passed with AuthInfo=socket=..., its directory mode 755, key mode 0400;
# two slurmd on one host need NodeAddr=127.0.0.1 with a port range and %n in their paths;
# config_overrides lets nodes declare more CPUs than the box has; linuxproc/task none
# avoid cgroups in a container. Node names n1, n2 do not resolve: jobs take the
# rendezvous address from NodeAddr.
set -euo pipefail
cmd=${1:?usage: slurm_cluster.sh start|stop DIR [CPUS_PER_NODE]}
dir=$(realpath -m "${2:?state directory}")
cpus=${3:-4}

stop_daemons() {
  local pidfile pid
  for pidfile in "$dir"/run/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
  done
  for pidfile in "$dir"/run/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

if [ "$cmd" = stop ]; then stop_daemons; exit 0; fi
[ "$cmd" = start ] || { echo "unknown command $cmd (start|stop)" >&2; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sbatch >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "SLURM is not installed and cannot be installed here (needs root and apt-get)" >&2; exit 3
  fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      slurmctld slurmd slurm-client munge >/dev/null) || { echo "apt-get install of SLURM failed" >&2; exit 3; }
fi

mkdir -p "$dir"/{run,log,spool,munge}
chmod 755 "$dir" "$dir/munge"
if [ ! -f "$dir/munge/munge.key" ]; then
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
fi
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed"

# Daemon ports above the launcher's rendezvous range (15000-29999).
port=$(( 40000 + RANDOM % 20000 ))
cat > "$dir/slurm.conf" <<CONF
ClusterName=longctx-test
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d-%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MailProg=/bin/true
JobRequeue=1
KillWait=10
# Job ids (and so the jobs' rendezvous ports) start at a random point, so two test
# sessions with clusters of their own on one machine do not share rendezvous ports.
FirstJobId=$(( 1 + RANDOM % 14000 ))
SlurmdParameters=config_overrides
NodeName=n[1-2] NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((port + 1))-$((port + 2)) CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=n[1-2] Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N n1
slurmd -f "$SLURM_CONF" -N n2
for _ in $(seq 60); do
  if [ "$(sinfo -h -N -o '%T' 2>/dev/null | grep -c '^idle$')" = 2 ]; then
    echo "SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "the SLURM cluster did not come up within 30 s; logs in $dir/log" >&2
stop_daemons
exit 1
