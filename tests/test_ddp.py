"""Two gloo processes on CPU give the loss and gradients of one process on the same global batch (issue: several GPUs).

Each rank takes its slice of the global batch of 8, the contrastive features (dual encoder: text/video embeddings;
CRET: text, per-frame features h and the CCM centres) are all-gathered, and DDP averages the gradients.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from vtrbench import distributed
from vtrbench.backbones import BackboneConfig, Backbones
from vtrbench.methods import build_method

VOCAB, RES, FRAMES, BATCH = 40, 16, 4, 8
BACKBONES = {
    "text": {"hidden": 16, "layers": 1, "heads": 2, "max_length": 12},
    "frame": {"hidden": 16, "layers": 1, "heads": 2, "patch_size": 8},
    "temporal": {"layers": 1, "heads": 2},
}
METHODS = {
    "dual_seq": {"class": "dual_encoder", "pooling": "seq", "dim": 16},
    "dual_mean": {"class": "dual_encoder", "pooling": "mean", "dim": 16},  # temporal encoder unused
    "cret_gees": {"class": "cret", "global_loss": "gees", "dim": 16, "num_centres": 2, "ccm_layers": 1, "ccm_heads": 2},
    "cret_nce": {"class": "cret", "global_loss": "nce", "dim": 16, "num_centres": 2, "ccm_layers": 1, "ccm_heads": 2},
}


def _method(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    backbones = Backbones(BackboneConfig.from_dict(BACKBONES), vocab_size=VOCAB, image_size=RES)
    return build_method(backbones, METHODS[name])


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(4, 12, (BATCH,), generator=g)
    mask = (torch.arange(12)[None] < lengths[:, None]).long()  # [B, L]
    return {
        "frames": torch.randint(0, 256, (BATCH, FRAMES, RES, RES, 3), dtype=torch.uint8, generator=g),
        "input_ids": torch.randint(5, VOCAB, (BATCH, 12), generator=g) * mask,
        "attention_mask": mask,
        "group_id": torch.arange(BATCH) // 4,
    }


def _loss_and_grads(name: str, batch: dict[str, torch.Tensor], ctx: distributed.Context) -> dict[str, object]:
    method = _method(name)
    loss_fn = distributed.loss_fn(method, ctx)
    terms = loss_fn(distributed.shard_batch(batch, ctx.world_size, ctx.rank, unit=4))
    loss = sum(v for k, v in terms.items() if k.endswith("_loss"))
    loss.backward()
    grads = {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in method.named_parameters()}
    return {"loss": float(loss.detach()), "terms": {k: float(v.detach()) for k, v in terms.items()}, "grads": grads}


def _worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(
        {"WORLD_SIZE": str(world_size), "RANK": str(rank), "LOCAL_RANK": str(rank)}
        | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    torch.set_num_threads(1)
    ctx = distributed.init_from_env(torch.device("cpu"))
    assert (ctx.world_size, ctx.rank) == (world_size, rank)
    try:
        results = {name: _loss_and_grads(name, _batch(), ctx) for name in METHODS}
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        distributed.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, dict]]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("name", list(METHODS))
def test_two_processes_equal_one_process(name: str, two_process_results: list[dict[str, dict]]) -> None:
    torch.set_num_threads(1)
    single = _loss_and_grads(name, _batch(), distributed.Context())
    for rank, results in enumerate(two_process_results):
        multi = results[name]
        assert multi["loss"] == pytest.approx(single["loss"], abs=1e-5), f"rank {rank}"
        assert multi["terms"] == pytest.approx(single["terms"], abs=1e-5), f"rank {rank}"
        assert multi["grads"].keys() == single["grads"].keys()
        for param, grad in single["grads"].items():
            other = multi["grads"][param]
            if grad is None:  # unused by this method (e.g. the temporal encoder under mean pooling)
                assert other is None or torch.count_nonzero(other) == 0, param
                continue
            assert other is not None, f"rank {rank}: no gradient for {param}"
            torch.testing.assert_close(other, grad, atol=1e-5, rtol=1e-4, msg=lambda m, p=param: f"{p}: {m}")


def test_shard_batch_keeps_whole_groups() -> None:
    batch = _batch()
    parts = [distributed.shard_batch(batch, 2, r, unit=4) for r in range(2)]
    assert [p["group_id"].tolist() for p in parts] == [[0, 0, 0, 0], [1, 1, 1, 1]]
    with pytest.raises(ValueError, match="multiple of 16"):
        distributed.shard_batch(batch, 4, 0, unit=4)


def test_one_process_is_untouched() -> None:
    method = _method("cret_gees")
    assert distributed.loss_fn(method, distributed.Context()) == method.loss
    assert distributed.all_gather_with_grad(torch.ones(2)) is not None
