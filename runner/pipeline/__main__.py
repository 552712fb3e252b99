"""``python -m runner.pipeline RUN_DIR``: the one entry point, in a local process and in a container."""

import sys
from pathlib import Path

from runner.core.secrets import load_secret_files
from runner.pipeline.run import run_pipeline

if len(sys.argv) != 2:
    sys.exit("usage: python -m runner.pipeline RUN_DIR")
load_secret_files()
sys.exit(run_pipeline(Path(sys.argv[1])))
