# Sourced after env.sh: run_job JOB runs one job file into /tmp/runs/NAME and keeps in $OUT its log,
# report.json, the end of its events.jsonl and a line in jobs.txt. Running it again reuses finished stages.
run_job() {
  local name start rc; name=$(basename "$1" .toml); start=$SECONDS
  python3 -m runner run "$1" --run-dir "/tmp/runs/$name" >> "$OUT/$name.log" 2>&1
  rc=$?
  echo "$(date +%T) $1 exit $rc after $((SECONDS - start)) s" | tee -a "$OUT/jobs.txt"
  cp "/tmp/runs/$name/report.json" "$OUT/$name-report.json" 2>/dev/null
  tail -c 3000000 "/tmp/runs/$name/events.jsonl" > "$OUT/$name-events.jsonl" 2>/dev/null
  return $rc
}
