import torch
import torch.distributed as dist

from monai_equivariant.bundle.distributed import shutdown_distributed


def test_shutdown_releases_ddp_reducer_then_destroys_group(tmp_path):
    shutdown_distributed(torch.nn.Linear(2, 2))  # no process group: a no-op
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        net = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 2))
        net(torch.randn(4, 3)).sum().backward()
        shutdown_distributed(net)
        assert not dist.is_initialized()
        assert net.reducer is None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
