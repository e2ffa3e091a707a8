"""train.amp / the evaluation's amp: bf16 autocast on CUDA only. On CPU amp=True must be a no-op (the same numbers as
amp=False); on CUDA the loss forward and the encoders run under bf16 autocast (those tests need a GPU).

Written against the public functions (``train_step``, ``encode_gallery``), not where the autocast context lives."""

from __future__ import annotations

import copy

import pytest
import torch

from vtrbench import runs
from vtrbench.data.batches import TrainBatches
from vtrbench.data.records import load_split
from vtrbench.encoding import encode_gallery
from vtrbench.train import make_optimizer, train_step

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast is enabled on CUDA only")


def _setup(config: dict, data, method: str = "dual_mean"):
    torch.manual_seed(0)
    setup = runs.build(config, method, data)
    split = load_split(data, "train")
    return setup, TrainBatches(split, runs.split_tokens(setup, split), 8, 4, 0, False)


def _two_steps(method, config, batches, amp: bool, device: torch.device) -> tuple[list[float], dict]:
    method = method.to(device)
    optimizer = make_optimizer(method, config, 1e-3)
    parameters = [p for p in method.parameters() if p.requires_grad]
    losses = []
    for step in range(2):
        batch = {k: v.to(device) for k, v in batches(step).items()}
        loss, _ = train_step(method.loss, parameters, optimizer, batch, 1.0, amp)
        losses.append(float(loss.detach()))
    return losses, {k: v.cpu() for k, v in method.state_dict().items()}


def test_amp_is_a_no_op_for_a_training_step_on_cpu(smoke_config, smoke_data):
    setup, batches = _setup(smoke_config, smoke_data)
    cpu = torch.device("cpu")
    plain = _two_steps(copy.deepcopy(setup.method), smoke_config, batches, False, cpu)
    amp = _two_steps(copy.deepcopy(setup.method), smoke_config, batches, True, cpu)
    assert plain[0] == amp[0]
    for key, value in plain[1].items():
        assert torch.equal(amp[1][key], value), key


def _dtype_probe(device: torch.device):
    """A loss whose forward records the dtype a Linear computes in, and whether autocast was on."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 8).to(device)
    seen: dict[str, object] = {}

    def loss_fn(batch):
        out = layer(batch["x"])
        seen.update(dtype=out.dtype, autocast=torch.is_autocast_enabled(device.type))
        return {"probe_loss": out.float().pow(2).mean()}

    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-3)
    return loss_fn, list(layer.parameters()), optimizer, seen


def test_amp_leaves_the_loss_forward_in_fp32_on_cpu():
    loss_fn, parameters, optimizer, seen = _dtype_probe(torch.device("cpu"))
    train_step(loss_fn, parameters, optimizer, {"x": torch.randn(4, 8)}, 1.0, True)
    assert seen == {"dtype": torch.float32, "autocast": False}


@CUDA
@pytest.mark.parametrize(("amp", "dtype"), [(True, torch.bfloat16), (False, torch.float32)])
def test_amp_runs_the_loss_forward_under_bf16_autocast_on_cuda(amp, dtype):
    device = torch.device("cuda")
    loss_fn, parameters, optimizer, seen = _dtype_probe(device)
    before = [p.detach().clone() for p in parameters]
    loss, _ = train_step(loss_fn, parameters, optimizer, {"x": torch.randn(4, 8, device=device)}, 1.0, amp)
    assert seen == {"dtype": dtype, "autocast": amp}
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, parameters, strict=True))  # it stepped


def test_amp_is_a_no_op_for_gallery_encoding_on_cpu(smoke_config, smoke_data):
    setup, _ = _setup(smoke_config, smoke_data, "cret")
    method = setup.method.eval()
    split = load_split(smoke_data, "val")
    cpu = torch.device("cpu")
    plain = encode_gallery(method, split, 4, 3, cpu, amp=False)
    amp = encode_gallery(method, split, 4, 3, cpu, amp=True)
    assert plain.keys() == amp.keys()
    for key, value in plain.items():
        assert value.dtype == torch.float32 and torch.equal(amp[key], value), key


@CUDA
@pytest.mark.parametrize("amp", [True, False])
def test_gallery_encoding_runs_under_bf16_autocast_on_cuda_and_returns_fp32(smoke_config, smoke_data, amp):
    setup, _ = _setup(smoke_config, smoke_data, "cret")
    method = setup.method.eval().cuda()
    seen = []
    encode = method.encode_videos

    def probed(frames):
        seen.append(torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") == torch.bfloat16)
        return encode(frames)

    method.encode_videos = probed
    features = encode_gallery(method, load_split(smoke_data, "val"), 4, 3, torch.device("cuda"), amp=amp)
    assert seen and all(s == amp for s in seen)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in features.values())
