import sys

from training.evaluation.cli import main

raise SystemExit(main(sys.argv[1:]))
