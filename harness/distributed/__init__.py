"""Distributed runs on torch.distributed, launched by torchrun (torch.distributed.run).

- `supervisor`: what `bench run --nproc N` does: launch torchrun, watch it, record failures.
- `worker`: the script torchrun starts on every rank: synchronized cases, rank 0 writes.
- `measure`: a timing schedule every rank agrees on; the step time is the max over ranks.
- `context`: the BuildContext that wraps training modules in DistributedDataParallel.
- `launch`: option checks and the torchrun command line; `job`: the files they share.
- `scaling`: scaling efficiency over world sizes.
"""
