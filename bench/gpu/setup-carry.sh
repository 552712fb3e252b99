# On the lent GPU machine, each device call: `bash .h-gpu/setup-carry.sh [start | resume | wait SECONDS]` unpacks the
# carried wheel folders .h-gpu/c*/ (bench/gpu/wheelhouse.sh) into /tmp/wh and joins split wheels; `start` lays
# out a fresh copy of the checkout (.h-gpu/repo.tar; the tiny weights from the tree that travels) and starts
# bench/gpu/setup-proof.sh detached (`resume`: over the copy and .venv already there, as a
# user reruns `just setup` after a fix); `wait` blocks until it ends or SECONDS pass. Logs are copied to $OUT.
set -u
mkdir -p /tmp/wh /tmp/proof/out
for d in .h-gpu/c*/; do [ -d "$d" ] && cp --update=none "$d"* /tmp/wh/; done
( cd /tmp/wh && for p in *.part-aa; do [ -e "$p" ] || continue; b=${p%.part-aa}
  [ ! -f "$b" ] && [ -f "$b.part-ab" ] && cat "$b".part-* > "$b.tmp" && mv "$b.tmp" "$b"; done )
if [ "${1:-}" = start ]; then rm -rf /tmp/proof/repo /tmp/tqhome* /tmp/tqcache; fi
if [ "${1:-}" = start ] || [ "${1:-}" = resume ]; then
  rm -rf /tmp/proof/out/*; mkdir -p /tmp/proof/repo && tar xf .h-gpu/repo.tar -C /tmp/proof/repo
  cp runner/models/tiny_llama/model.safetensors /tmp/proof/repo/runner/models/tiny_llama/  # main's copy: the same file
  setsid nohup bash /tmp/proof/repo/bench/gpu/setup-proof.sh > /tmp/proof/out/proof.log 2>&1 < /dev/null &
  sleep 20
fi
if [ "${1:-}" = wait ]; then
  end=$(( $(date +%s) + $2 )); while [ ! -f /tmp/proof/out/done ] && [ $(date +%s) -lt $end ]; do sleep 5; done
fi
o=/tmp/proof/out
for f in times.txt setup.log demo.log pytest-gpu.log machine.txt done; do [ -f $o/$f ] && cp $o/$f $OUT/; done
tail -c 20000 .venv/share/tuneq/llama-build.log > $OUT/llama-build.log 2>/dev/null || tail -c 20000 /tmp/proof/repo/.venv/share/tuneq/llama-build.log > $OUT/llama-build.log 2>/dev/null
{ cat $o/proof.log; echo "--- /tmp/wh:"; ls /tmp/wh | wc -l; ls /tmp/wh | grep -E 'part|smollm2|ray|unsloth'; } > $OUT/proof.log 2>&1
echo "== times"; cat $o/times.txt 2>/dev/null; echo "== setup tail"; tail -5 $o/setup.log 2>/dev/null; echo "== proof"; tail -5 $o/proof.log
