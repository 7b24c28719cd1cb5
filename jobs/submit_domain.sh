#!/usr/bin/env bash
# Submit a whole glacier-domain run on Slurm: `glacgrid domain-groups` (run here, on the login node:
# the shared stages once -- ingest, domain, training table, model -- and the results template; prints
# the number of groups) -> the array of group tasks (jobs/run_domain_array.sbatch, GROUPS_PER_TASK
# groups each) -> a finishing job (`glacgrid domain-finish`: glacier log, tables, validation) that runs
# after the whole array succeeded (--dependency=afterok).
#
#   GROUPS_PER_TASK=2 jobs/submit_domain.sh CONFIG.toml [extra sbatch options, e.g. --account=proj]
#
# Re-run the same command after a failure (a killed or timed-out task): the preparation is found done,
# done groups are skipped and a killed group resumes at its first unfinished year; only the missing
# groups are submitted. Prints the job ids (array, finish) and the array. Resources per kind:
# GLACGRID_GROUP_OPTS and GLACGRID_FINISH_OPTS (sbatch options, e.g. "--cpus-per-task=4 --mem=16G").
# Set GLACGRID_PREPARE_ON_SLURM=1 to run the preparation as a Slurm job too (it must finish first, as
# its group count sizes the array: this script then waits for it with `srun`).
set -euo pipefail
CONFIG=${1:?usage: GROUPS_PER_TASK=G jobs/submit_domain.sh CONFIG.toml [sbatch options]}
shift
PER=${GROUPS_PER_TASK:-1}
JOBS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -n ${GLACGRID_PYTHON:-} ]]; then GG=("$GLACGRID_PYTHON" -m glacgrid.cli)
elif [[ -n ${GLACGRID:-} ]]; then GG=("$GLACGRID")
elif command -v glacgrid >/dev/null; then GG=(glacgrid)
else GG=("$JOBS/../.venv/bin/glacgrid"); fi

if [[ -n ${GLACGRID_PREPARE_ON_SLURM:-} ]]; then
    # shellcheck disable=SC2086
    n=$(srun --job-name=glacgrid-prepare ${GLACGRID_PREPARE_OPTS:-} "$@" "${GG[@]}" domain-groups "$CONFIG" | tail -n 1)
else
    n=$("${GG[@]}" domain-groups "$CONFIG" | tail -n 1)
fi
if ! [[ $n =~ ^[0-9]+$ ]]; then echo "domain-groups printed ${n@Q}, not a number of groups" >&2; exit 1; fi
missing=$("${GG[@]}" domain-missing "$CONFIG")
# the array tasks owning a missing group (all of them for a new run)
tasks=$(tr ',' '\n' <<<"$missing" | awk -v per="$PER" 'NF {print int($1 / per)}' | sort -n -u | paste -sd, -)
array_id=-
finish_dep=()
if [[ -n $tasks ]]; then
    # shellcheck disable=SC2086
    array_id=$(sbatch --parsable --array="$tasks" --export=ALL,GROUPS_PER_TASK="$PER" ${GLACGRID_GROUP_OPTS:-} "$@" \
        "$JOBS/run_domain_array.sbatch" "$CONFIG")
    finish_dep=(--dependency="afterok:$array_id" --kill-on-invalid-dep=yes)
else
    echo "all $n groups are done; submitting the finishing job only" >&2
fi
# shellcheck disable=SC2086
finish_id=$(sbatch --parsable --job-name=glacgrid-finish --output=%x-%j.log "${finish_dep[@]}" \
    ${GLACGRID_FINISH_OPTS:-} "$@" --wrap "$(printf '%q ' "${GG[@]}") domain-finish $(printf '%q' "$CONFIG")")
echo "groups=$n per_task=$PER array=$array_id tasks=${tasks:-none} finish=$finish_id"
