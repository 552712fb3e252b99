"""``python -m runner.worker [--extra]``: a foreground worker (what ``tuneq daemon start`` detaches)."""

import argparse
import sys

from runner.worker.loop import serve

parser = argparse.ArgumentParser(prog="python -m runner.worker")
parser.add_argument("--extra", action="store_true", help="run beside the state directory's worker")
sys.exit(serve(extra=parser.parse_args().extra))
