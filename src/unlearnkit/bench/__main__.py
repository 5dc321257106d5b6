"""`python -m unlearnkit.bench worker SPEC.json RESULT.json`: one benchmark worker (see worker.py)."""

import sys

from unlearnkit.bench.worker import main

main(sys.argv[1:])
