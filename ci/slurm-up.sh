#!/usr/bin/env bash
# A real single-node Slurm on localhost for the tests: munged + slurmctld + slurmd, config and state
# under one directory ($GLACGRID_SLURM_DIR, default /tmp/glacgrid-slurm). Idempotent: a second call
# finds the daemons of the first running and does nothing. Stop them with ci/slurm-down.sh, which kills
# exactly the PIDs recorded here.
#
#   ci/slurm-up.sh            # installs Debian's slurm-wlm and munge when missing (needs root)
#   export SLURM_CONF=/tmp/glacgrid-slurm/slurm.conf   # printed at the end; sbatch/squeue need it
#
# Environment: GLACGRID_SLURM_DIR (state directory), GLACGRID_SLURM_CPUS (CPUs the node offers;
# default max(4, nproc): the node may be oversubscribed so that a driver job and two worker jobs fit on
# a 2-core CI machine), GLACGRID_SLURM_MEM (MiB the node offers; default 3/4 of the machine's memory),
# GLACGRID_SLURM_MEM_PER_CPU (DefMemPerCPU, MiB; default 2048).
set -euo pipefail

DIR=${GLACGRID_SLURM_DIR:-/tmp/glacgrid-slurm}
CONF=$DIR/slurm.conf

alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
        || ! command -v sbatch >/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "slurm-up: slurm-wlm and munge are not installed and this is not root;" \
             "install them with: sudo apt-get install -y slurm-wlm munge" >&2
        exit 1
    fi
    echo "slurm-up: installing Debian's slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

mkdir -p "$DIR"/{state,spool,log,munge}
chmod 700 "$DIR/munge"

# --- munge: its own key and socket; as root munged needs --force ------------------------------------
if alive "$DIR/munged.pid"; then
    echo "slurm-up: munged already running (pid $(cat "$DIR/munged.pid"))"
else
    if [[ ! -s $DIR/munge/munge.key ]]; then
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$DIR/munge/munge.key" --force
        else
            dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        fi
        chmod 400 "$DIR/munge/munge.key"
    fi
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munge.seed"
    for _ in $(seq 50); do alive "$DIR/munged.pid" && [[ -S $DIR/munge/munge.socket ]] && break; sleep 0.1; done
    alive "$DIR/munged.pid" || { echo "slurm-up: munged did not start; see $DIR/log/munged.log" >&2; exit 1; }
fi

# --- slurm.conf -------------------------------------------------------------------------------------
NPROC=$(nproc)
CPUS=${GLACGRID_SLURM_CPUS:-$(( NPROC > 4 ? NPROC : 4 ))}
MEM_TOTAL=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
MEM=${GLACGRID_SLURM_MEM:-$(( MEM_TOTAL * 3 / 4 ))}
MEM_PER_CPU=${GLACGRID_SLURM_MEM_PER_CPU:-2048}
cat > "$CONF.new" <<CONFEOF
# written by ci/slurm-up.sh: a single-node Slurm on localhost for the glacgrid tests
ClusterName=glacgrid-ci
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${GLACGRID_SLURMCTLD_PORT:-6817}
SlurmdPort=${GLACGRID_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$MEM_PER_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
SchedulerParameters=sched_interval=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONFEOF
if ! cmp -s "$CONF.new" "$CONF"; then
    mv "$CONF.new" "$CONF"
else
    rm -f "$CONF.new"
fi
export SLURM_CONF=$CONF

# --- slurmctld and slurmd (the host name is not localhost: -N localhost, NodeAddr=127.0.0.1) ----------
if alive "$DIR/slurmctld.pid"; then
    echo "slurm-up: slurmctld already running (pid $(cat "$DIR/slurmctld.pid"))"
else
    slurmctld -f "$CONF"
fi
if alive "$DIR/slurmd.pid"; then
    echo "slurm-up: slurmd already running (pid $(cat "$DIR/slurmd.pid"))"
else
    slurmd -f "$CONF" -N localhost
fi

# --- wait until the node takes jobs -------------------------------------------------------------------
for _ in $(seq 120); do
    state=$(sinfo -h -N -n localhost -o '%t' 2>/dev/null || true)
    if [[ $state == idle* || $state == mix* || $state == alloc* ]]; then
        echo "slurm-up: Slurm is up (node localhost: $state, $CPUS CPUs, $MEM MiB); state in $DIR"
        echo "export SLURM_CONF=$CONF"
        exit 0
    fi
    if [[ $state == down* || $state == drain* ]]; then
        scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
    fi
    sleep 0.5
done
echo "slurm-up: the node did not become idle (state: '${state:-none}'); logs in $DIR/log" >&2
exit 1
