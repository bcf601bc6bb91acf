"""One process of a `torchrun --nproc_per_node N` group in the tests: runs `whp` commands in turn.

    torchrun --standalone --nproc_per_node 2 distributed_worker.py COMMANDS.json

COMMANDS.json is a list of argument lists for `whp.cli.main`; the worker stops at the first
that fails, with its exit code.
"""

import json
import sys

import torch

from whp.cli import main

if __name__ == "__main__":
    torch.set_num_threads(1)
    for argv in json.loads(open(sys.argv[1]).read()):
        code = main(argv)
        if code:
            sys.exit(code)
