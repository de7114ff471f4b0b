"""Run several ``ssl-pretrain`` commands in each process of one torchrun launch, in one process group.

    torchrun --nproc_per_node=N tests/train/sync_driver.py RUNS.json

``RUNS.json``: a list of argument lists for :func:`ssl_pretrain.cli.main`. The group is set up here once, so
the runs share it (the trainer leaves a group its caller set up); exits 1 at the first run that fails.
"""

import json
import sys

import torch.distributed as dist

from ssl_pretrain.cli import main

if __name__ == "__main__":
    dist.init_process_group("gloo")
    try:
        for args in json.loads(open(sys.argv[1]).read()):
            if main(args) != 0:
                sys.exit(1)
    finally:
        dist.destroy_process_group()
