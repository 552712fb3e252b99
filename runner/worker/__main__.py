"""``python -m runner.worker [--extra] [--cluster HOST:PORT]``: a foreground worker (what ``tuneq daemon
start`` detaches)."""

import argparse
import sys

from runner.core.secrets import redacted_output
from runner.worker.loop import serve

parser = argparse.ArgumentParser(prog="python -m runner.worker")
parser.add_argument("--extra", action="store_true", help="run beside the state directory's worker")
parser.add_argument("--cluster", metavar="HOST:PORT", help="run every job on a node of this Ray cluster")
args = parser.parse_args()
with redacted_output():  # worker.log holds what it prints
    code = serve(extra=args.extra, cluster=args.cluster)
sys.exit(code)
