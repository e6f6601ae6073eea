"""Data-parallel training of a small BatchNorm MLP on the embedded digits.

    tensortape launch --nproc 2 examples/ddp.py --epochs 3
    mpiexec -n 2 python -m mpi4py examples/ddp.py --epochs 3     (the same, by hand)
    python examples/ddp.py                                        (one process: a world of 1)

--batch-size is the global batch: each of N ranks takes batch-size / N samples a step and the
gradients are averaged, so the result does not depend on N.
"""

import argparse

import engine
import engine.distributed as dist
import engine.functional as F
import layers as nn
import optimizers as optim
from engine.data import DataLoader, DistributedSampler, load_digits


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64, help="global batch over all ranks")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, help="rank 0 writes the weights here (.npz)")
    args = p.parse_args(argv)

    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} must divide by the {world} ranks")
    device = dist.local_device()
    train, test = load_digits()

    engine.manual_seed(args.seed)  # the same initial model on every rank
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(128, 10),
    )  # fmt: skip
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model).to(device)
    ddp = nn.parallel.DistributedDataParallel(model)
    engine.manual_seed(args.seed + rank)  # dropout masks differ between ranks
    opt = optim.Adam(ddp.parameters(), lr=args.lr)
    sampler = DistributedSampler(train, seed=args.seed)
    loader = DataLoader(train, batch_size=args.batch_size // world, sampler=sampler, device=device)

    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        ddp.train()
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(ddp(x), y).backward()
            opt.step()
        result = nn.parallel.distributed_evaluate(model, test, batch_size=256, device=device)
        if rank == 0:
            print(
                f"epoch {epoch}: test loss {result['loss']:.4f}, "
                f"accuracy {result['accuracy']:.4f} ({result['count']} samples, {world} ranks)"
            )
    if rank == 0 and args.save:
        engine.save(model.state_dict(), args.save)
    return result["accuracy"]


if __name__ == "__main__":
    main()
