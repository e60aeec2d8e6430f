"""How many real images per class a testbed needs before condensation can be judged on it (issue #23).

Condensation's target (>= 10x fewer bits at <= 2 points of the unpenalised set's accuracy) says
nothing where every set, random real images included, stays at chance. This trains the
condensation's evaluation classifiers (``evaluate_condensed``'s: a fresh ConvNet, its default
epochs) on random real subsets of the train split, ``ipc`` images per class, and tests them on
the test split: the accuracy a condensed set of that size would have to beat.

    OMP_NUM_THREADS=1 python benchmarks/condense_real_subsets.py --testbed radiograph --ipc 10,25
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbed", default="radiograph")
    parser.add_argument("--ipc", default="10,25", help="images per class, comma-separated")
    parser.add_argument("--n-models", type=int, default=3, help="classifiers (and subsets) per row")
    parser.add_argument("--test-n", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from simplebits_audit import testbeds
    from simplebits_audit.training.condensation import random_real_set
    from simplebits_audit.training.networks import accuracy, train_network

    train, test = testbeds.load(args.testbed, "train"), testbeds.load(args.testbed, "test")
    n_classes = len(train.classes)
    test_x, test_y = test.images[: args.test_n], test.labels[: args.test_n]
    table = Table(title=f"{args.testbed}: random real subsets, {args.n_models} ConvNets per row, {len(test_y)} test images")
    for col in ("images / class", "test acc. % (mean ± std)", "each", "min"):
        table.add_column(col)
    for ipc in (int(v) for v in args.ipc.split(",")):
        start, accs = time.perf_counter(), []
        for k in range(args.n_models):  # the subsets and seeds evaluate_condensed's "random real" row uses
            net = train_network(*random_real_set(train.images, train.labels, ipc, n_classes, k), n_classes, seed=k)
            accs.append(100 * accuracy(net, test_x, test_y))
        t = torch.tensor(accs)
        table.add_row(str(ipc), f"{t.mean():.1f} ± {t.std():.1f}", " / ".join(f"{a:.1f}" for a in accs),
                      f"{(time.perf_counter() - start) / 60:.1f}")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
