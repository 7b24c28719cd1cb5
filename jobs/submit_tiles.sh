#!/usr/bin/env bash
# Submit a whole tiled run, chained with --dependency=afterok: a prepare job (`glacgrid tiles prepare`:
# shared stages, results template, tile layout) -> the array of tile tasks (jobs/run_tiles.sbatch) ->
# a finish job (`glacgrid tiles finish`: tables and figure). Run it on a login node from the directory
# where the logs (%x-%j.log, %x-%A_%a.log) should go.
#
#   jobs/submit_tiles.sh CONFIG.toml NTILES [extra sbatch options for every job, e.g. --account=proj]
#
# Re-run the same command after a failure (a killed or timed-out task): when the tiles are already
# prepared for this configuration, only the missing tiles are submitted, then the finish job. Prints
# the job ids (prepare, array, finish; "-" for a job not needed).
# Resources per kind: GLACGRID_PREPARE_OPTS, GLACGRID_TILE_OPTS, GLACGRID_FINISH_OPTS (sbatch options,
# e.g. GLACGRID_TILE_OPTS="--cpus-per-task=8 --mem=32G --time=04:00:00").
set -euo pipefail
CONFIG=${1:?usage: jobs/submit_tiles.sh CONFIG.toml NTILES [sbatch options]}
NTILES=${2:?usage: jobs/submit_tiles.sh CONFIG.toml NTILES [sbatch options]}
shift 2
JOBS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -n ${GLACGRID_PYTHON:-} ]]; then GG=("$GLACGRID_PYTHON" -m glacgrid.cli)
elif [[ -n ${GLACGRID:-} ]]; then GG=("$GLACGRID")
elif command -v glacgrid >/dev/null; then GG=(glacgrid)
else GG=("$JOBS/../.venv/bin/glacgrid"); fi

prepare_id=-
dependency=()
if missing=$("${GG[@]}" tiles missing "$CONFIG" 2>/dev/null); then
    # prepared before (same configuration): only what is missing
    if [[ -z $missing ]]; then
        echo "all tiles are in the results store; submitting the finish job only" >&2
    fi
    array=$missing
else
    # shellcheck disable=SC2086
    prepare_id=$(sbatch --parsable --job-name=glacgrid-prepare --output=%x-%j.log ${GLACGRID_PREPARE_OPTS:-} "$@" \
        --wrap "$(printf '%q ' "${GG[@]}") tiles prepare $(printf '%q' "$CONFIG") --tiles $NTILES --cluster local")
    dependency=(--dependency="afterok:$prepare_id" --kill-on-invalid-dep=yes)
    array=0-$((NTILES - 1))   # tasks beyond the tiles the layout can make exit at once
fi
array_id=-
finish_dep=()
if [[ -n $array ]]; then
    # shellcheck disable=SC2086
    array_id=$(sbatch --parsable --array="$array" "${dependency[@]}" ${GLACGRID_TILE_OPTS:-} "$@" \
        "$JOBS/run_tiles.sbatch" "$CONFIG")
    finish_dep=(--dependency="afterok:$array_id" --kill-on-invalid-dep=yes)
elif [[ ${#dependency[@]} -gt 0 ]]; then
    finish_dep=("${dependency[@]}")
fi
# shellcheck disable=SC2086
finish_id=$(sbatch --parsable --job-name=glacgrid-finish --output=%x-%j.log "${finish_dep[@]}" \
    ${GLACGRID_FINISH_OPTS:-} "$@" --wrap "$(printf '%q ' "${GG[@]}") tiles finish $(printf '%q' "$CONFIG")")
echo "prepare=$prepare_id array=$array_id tiles=${array:-none} finish=$finish_id"
