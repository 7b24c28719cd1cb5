#!/usr/bin/env bash
# Stop the Slurm started by ci/slurm-up.sh: exactly the PIDs it recorded (slurmd, slurmctld, munged),
# nothing else. Safe to call when nothing runs. Keeps $GLACGRID_SLURM_DIR (logs) unless --purge.
set -uo pipefail
DIR=${GLACGRID_SLURM_DIR:-/tmp/glacgrid-slurm}
stop() {  # stop NAME PIDFILE: TERM, wait up to 10 s, then KILL
    local name=$1 pidfile=$2 pid
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null; fi
        echo "slurm-down: stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
}
# cancel what is still queued or running so no job step outlives the daemons
if [[ -s $DIR/slurmctld.pid ]] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
    SLURM_CONF=$DIR/slurm.conf scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    sleep 1
fi
stop slurmd "$DIR/slurmd.pid"
stop slurmctld "$DIR/slurmctld.pid"
stop munged "$DIR/munged.pid"
if [[ ${1:-} == --purge ]]; then rm -rf "$DIR"; fi
exit 0
