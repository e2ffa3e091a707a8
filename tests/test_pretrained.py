"""Pretrained backbones through transformers' ``from_pretrained``, with tiny models saved to a temporary folder.

Paper scale names hub ids (BERT-base-uncased, DeiT-S: config/msrvtt.yaml); a test never does (no network): the same
loading code reads a local folder written by ``save_pretrained``. Also: the device check script's CPU tiny mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from transformers import BertConfig, BertModel, BertTokenizerFast, ViTConfig, ViTModel

from tests.conftest import REPO
from vtrbench import config as config_lib
from vtrbench.backbones import BackboneConfig, Backbones
from vtrbench.pretrained import load_tokenizer
from vtrbench.runs import build
from vtrbench.train import param_groups, train

PRETRAINED_SIZE = 32  # the tiny ViT is "pretrained" at 32 px; the smoke data is 16 px -> position interpolation


@pytest.fixture(scope="module")
def pretrained_dirs(tmp_path_factory: pytest.TempPathFactory, smoke_data: Path) -> dict[str, Path]:
    """A tiny BERT (+ its tokenizer, from the smoke vocabulary) and a tiny ViT, saved like hub checkpoints."""
    root = tmp_path_factory.mktemp("pretrained")
    tokenizer = BertTokenizerFast(vocab_file=str(smoke_data / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=24,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=48,
            max_position_embeddings=64,
        ),
        add_pooling_layer=False,
    )
    bert.save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    vit = ViTModel(
        ViTConfig(
            image_size=PRETRAINED_SIZE,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        ),
        add_pooling_layer=False,
    )
    vit.save_pretrained(root / "vit")
    stats = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "size": {"height": 32}}
    (root / "vit" / "preprocessor_config.json").write_text(json.dumps(stats))
    return {"text": root / "bert", "frame": root / "vit"}


def _pretrained_config(smoke_config: dict, dirs: dict[str, Path]) -> dict:
    cfg = json.loads(json.dumps(smoke_config))
    cfg["model"]["text"]["pretrained"] = str(dirs["text"])
    cfg["model"]["frame"]["pretrained"] = str(dirs["frame"])
    cfg["train"]["backbone_lr_scale"] = 0.1
    return config_lib.validate(cfg)


def test_backbones_load_the_saved_weights(pretrained_dirs: dict[str, Path]) -> None:
    cfg = BackboneConfig.from_dict({"text": {"pretrained": str(pretrained_dirs["text"])}, "frame": {}})
    cfg.frame.pretrained = str(pretrained_dirs["frame"])
    backbones = Backbones(cfg, vocab_size=0, image_size=PRETRAINED_SIZE)  # vocab_size unused when pretrained
    saved_bert = BertModel.from_pretrained(pretrained_dirs["text"], add_pooling_layer=False)
    saved_vit = ViTModel.from_pretrained(pretrained_dirs["frame"], add_pooling_layer=False)
    for ours, saved in ((backbones.text.bert, saved_bert), (backbones.frame.vit, saved_vit)):
        for (name, a), (_, b) in zip(ours.state_dict().items(), saved.state_dict().items(), strict=True):
            assert torch.equal(a, b), name
    assert (backbones.text.dim, backbones.frame.dim) == (24, 32)
    assert not backbones.frame.interpolate  # same resolution as pretraining
    assert backbones.frame.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])  # from the folder
    tokenizer = load_tokenizer(cfg.text, vocab_file=None)  # the checkpoint's own tokenizer, no dataset vocab
    assert tokenizer("a red circle")["input_ids"][0] == tokenizer.cls_token_id


def test_other_resolution_interpolates_the_position_embeddings(pretrained_dirs: dict[str, Path]) -> None:
    cfg = BackboneConfig.from_dict({"frame": {"pretrained": str(pretrained_dirs["frame"])}})
    encoder = Backbones(cfg, vocab_size=50, image_size=16).frame  # 16 px frames, pretrained at 32 px
    assert encoder.interpolate
    out = encoder(torch.randint(0, 256, (2, 3, 16, 16, 3), dtype=torch.uint8))
    assert out.pooled.shape == (2, 3, 32) and out.patches.shape == (2, 3, 4, 32)  # (16/8)^2 = 4 patches
    assert torch.isfinite(out.patches).all()


@pytest.mark.parametrize("method", ["cret", "dual_mean"])
def test_short_training_with_pretrained_backbones(
    method: str, smoke_config: dict, smoke_data: Path, pretrained_dirs: dict[str, Path], tmp_path: Path
) -> None:
    cfg = _pretrained_config(smoke_config, pretrained_dirs)
    setup = build(cfg, method, smoke_data)
    scales = {
        name.split(".")[1]: group["lr_scale"]
        for group in param_groups(setup.method, cfg)
        for name, p in setup.method.named_parameters()
        if name.startswith("backbones.") and any(p is q for q in group["params"])
    }
    assert scales == {"text": 0.1, "frame": 0.1, "temporal": 1.0}  # the temporal encoder is new: full lr
    model = train(cfg, method, 0, smoke_data, tmp_path / "run")
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    assert len(log) == cfg["train"]["steps"] and log["loss"].notna().all()
    ckpt = torch.load(model, weights_only=False)
    assert ckpt["config"]["model"]["text"]["pretrained"] == str(pretrained_dirs["text"])
    bert = {k.removeprefix("backbones.text.bert."): v for k, v in ckpt["model"].items() if ".text.bert." in k}
    assert set(bert) == set(BertModel.from_pretrained(pretrained_dirs["text"], add_pooling_layer=False).state_dict())


def test_paper_configs_name_bert_base_and_deit_small() -> None:
    for name in ("msrvtt", "msvd", "didemo"):
        cfg = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
        assert cfg["model"]["text"]["pretrained"] == "google-bert/bert-base-uncased"
        assert cfg["model"]["frame"]["pretrained"] == "facebook/deit-small-patch16-224"
        cfg["dataset"]["data_root"] = "/data"  # the user sets it: --config 'dataset={data_root: ...}'
        config_lib.validate(cfg)
        with pytest.raises(config_lib.ConfigError, match=r"dataset\.data_root"):
            config_lib.validate(yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text()))
    msrvtt = yaml.safe_load((REPO / "config" / "msrvtt.yaml").read_text())
    didemo = yaml.safe_load((REPO / "config" / "didemo.yaml").read_text())
    assert msrvtt["dataset"]["msrvtt_train"] == "7k"
    assert didemo["model"]["text"]["max_length"] > msrvtt["model"]["text"]["max_length"]  # paragraphs


def test_gpu_check_tiny_mode_runs_on_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--tiny", "--device", "cpu", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    table = pd.read_csv(tmp_path / "gpu_check.csv")
    assert list(table["method"]) == ["dual_mean", "cret", "cret_nce"]
    assert (table["train_steps_per_s"] > 0).all() and (table["query_ms_p50"] > 0).all()
    assert table.loc[table.method != "dual_mean", ["step_ms_M4", "step_ms_M16"]].notna().all().all()
    assert "query_ms_p50" in out.stdout and "step_ms_M16" in out.stdout  # the printed table
    sizing = pd.read_csv(tmp_path / "clip_sizing.csv")  # the CLIP sizing path, on a tiny CLIP
    assert (sizing.step_ms > 0).all() and (sizing.tower_params_M > 0).all() and "peak_mem_mb" in out.stdout
