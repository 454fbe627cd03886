#!/usr/bin/env bash
# Run the spec files queued in $SCRATCH/queue/<lane>/ one after another (sorted by name), moving each to done/
# when it finishes; waits for new files until the lane's queue holds a file named STOP.
#   experiments/run_lane.sh A        (from the worktree root)
set -u
lane=$1
scratch=${I15_SCRATCH:-/tmp/i15-research}
queue=$scratch/queue/$lane
mkdir -p "$queue" "$scratch/queue/done" "$scratch/logs"
while true; do
  if [ -e "$queue/STOP" ]; then rm -f "$queue/STOP"; exit 0; fi
  next=$(ls "$queue" 2>/dev/null | grep '\.json$' | sort | head -1)
  if [ -z "$next" ]; then sleep 30; continue; fi
  echo "[$(date +%H:%M:%S)] lane $lane: $next" >> "$scratch/logs/lane-$lane.log"
  PYTHONPATH=$PWD /work/main/.venv/bin/python -m experiments.harness "$queue/$next" >> "$scratch/logs/lane-$lane.log" 2>&1
  mv "$queue/$next" "$scratch/queue/done/$lane-$next"
done
