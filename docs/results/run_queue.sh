#!/usr/bin/env bash
# The study's run queue: two runs at a time, one thread each, resumable.
#   bash docs/results/run_queue.sh QUEUE_FILE RUNS_ROOT
# Each line of QUEUE_FILE: "<results-folder> <run-dir> <mtrl train arguments...>"; a run works in
# RUNS_ROOT/<results-folder>/<run-dir> (run.dir is recorded relative to the results folder).
# A run whose folder has .done is skipped; one with config.yaml but no .done is resumed from its
# latest checkpoint (resume=true), so rerunning the same command after a stop continues the queue.
# A line whose arguments start with "sb3_peer" runs benchmarks/sb3_peer.py instead (resumed the
# same way; a peer started before it could checkpoint starts again from step 0).
# Afterwards copy each finished run's config.yaml and metrics.jsonl into docs/results/<results-folder>/.
set -u
queue=$(realpath "$1"); root=$(realpath "${2:-runs}"); repo=$(realpath "$(dirname "$0")/../..")
export OMP_NUM_THREADS=1
claimed=$(mktemp)
run_one() {
  local folder=$1 dir=$2; shift 2
  cd "$root/$folder" || return  # the loop below creates it
  local extra="" cmd=(python -m mtrl.cli train)
  if [ "$1" = sb3_peer ]; then
    shift; cmd=(python "$repo/benchmarks/sb3_peer.py")
  fi
  if [ -f "$dir/config.yaml" ]; then
    extra="resume=true"
  fi
  mkdir -p "$dir"; echo "$(date -u +%FT%T) start $folder/$dir $extra" >> "$root/queue.log"
  local t0=$(date +%s)
  "${cmd[@]}" "$@" run.dir="$dir" train.progress=false device=cpu $extra >> "$dir/stdout.log" 2>&1
  local rc=$? dt=$(( $(date +%s) - t0 ))
  echo "$(date -u +%FT%T) end $folder/$dir rc=$rc ${dt}s" >> "$root/queue.log"
  [ $rc -eq 0 ] && echo "$dt" > "$dir/.done"
}
next_line() {  # the first line neither finished nor started by this queue
  while read -r folder dir rest; do
    [ -z "$folder" ] || [[ $folder == \#* ]] && continue
    grep -qxF "$folder/$dir" "$claimed" && continue
    [ -f "$root/$folder/$dir/.done" ] && continue
    echo "$folder/$dir" >> "$claimed"; echo "$folder $dir $rest"; return
  done < "$queue"
}
while true; do
  while [ "$(jobs -rp | wc -l)" -ge 2 ]; do sleep 20; done
  line=$(next_line)
  if [ -z "$line" ]; then wait; line=$(next_line); [ -z "$line" ] && break; fi
  mkdir -p "$root/${line%% *}"
  run_one $line &
  sleep 2
done
wait
