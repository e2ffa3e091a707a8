"""CLIP towers through transformers' ``from_pretrained``, with a tiny random CLIP saved to a temporary folder.

Paper scale names a hub id (openai/clip-vit-base-patch32: config/msrvtt-clip.yaml); a test never does (no network):
the same loading code reads a local folder written by ``save_pretrained``. The tiny CLIP is "pretrained" at 32 px
and the smoke data is 16 px, so every forward here also exercises the position-embedding interpolation.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from tests.conftest import REPO, copy_workflow, snakemake_env
from vtrbench import config as config_lib
from vtrbench.backbones import BackboneConfig, Backbones
from vtrbench.cli import main
from vtrbench.data.batches import tokenize
from vtrbench.data.records import load_split
from vtrbench.pretrain import clip_tokenizer
from vtrbench.pretrained import CLIP_MEAN, CLIP_STD, load_tokenizer

PRETRAINED_SIZE = 32  # the tiny CLIP's image_size; the smoke frames are 16 px -> interpolated positions
PROJECTION = 16  # the tiny CLIP's projection_dim: the width of every CLIP tower output
TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
VISION = {**TEXT, "num_hidden_layers": 2, "image_size": PRETRAINED_SIZE, "patch_size": 8}


def _text_config(tokenizer: CLIPTokenizer) -> dict:
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    return {**TEXT, **ids, "pad_token_id": tokenizer.pad_token_id, "vocab_size": len(tokenizer)}


@pytest.fixture(scope="module")
def clip_dirs(tmp_path_factory: pytest.TempPathFactory, smoke_data: Path) -> dict[str, Path]:
    """``full``: a CLIPModel + tokenizer + preprocessor config; ``text`` / ``vision``: single-tower checkpoints
    (with projection, no preprocessor); ``text_no_projection``: a CLIPTextModel; ``gpt2``: a foreign config."""
    root = tmp_path_factory.mktemp("clip")
    words = [w for w in (smoke_data / "vocab.txt").read_text().split() if w.isalpha()]
    tokenizer = clip_tokenizer(words)
    text = _text_config(tokenizer)
    with torch.random.fork_rng():  # seeded weights, and the caller's random state left as it was
        torch.manual_seed(0)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=VISION, projection_dim=PROJECTION))
        text_tower = CLIPTextModelWithProjection(CLIPTextConfig(**text, projection_dim=PROJECTION))
        vision_tower = CLIPVisionModelWithProjection(CLIPVisionConfig(**VISION, projection_dim=PROJECTION))
        text_only = CLIPTextModel(CLIPTextConfig(**text))
    model.save_pretrained(root / "full")
    tokenizer.save_pretrained(root / "full")
    stats = {"image_mean": CLIP_MEAN, "image_std": CLIP_STD, "crop_size": {"height": 32, "width": 32}}
    (root / "full" / "preprocessor_config.json").write_text(json.dumps(stats))
    text_tower.save_pretrained(root / "text")
    tokenizer.save_pretrained(root / "text")
    vision_tower.save_pretrained(root / "vision")
    text_only.save_pretrained(root / "text_no_projection")
    (root / "gpt2").mkdir()
    (root / "gpt2" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    return {name: root / name for name in ("full", "text", "vision", "text_no_projection", "gpt2")}


def _backbones(text: Path, frame: Path, image_size: int = 16) -> Backbones:
    cfg = BackboneConfig.from_dict({"text": {"pretrained": str(text)}, "frame": {"pretrained": str(frame)}})
    return Backbones(cfg, vocab_size=0, image_size=image_size).eval()  # vocab_size unused when pretrained


# ---- (a) shapes, widths, normalisation, tokenizer ----------------------------------------------------------------


def test_tokenizer_is_clips_own_and_reads_every_smoke_caption(clip_dirs: dict[str, Path], smoke_data: Path) -> None:
    cfg = BackboneConfig.from_dict({"text": {"pretrained": str(clip_dirs["full"])}}).text
    tokenizer = load_tokenizer(cfg, vocab_file=None)  # the checkpoint's own tokenizer, no dataset vocab
    assert isinstance(tokenizer, CLIPTokenizer)
    captions = load_split(smoke_data, "train").captions
    tokens = tokenize(tokenizer, captions, max_length=40)  # smoke.yaml's model.text.max_length
    lengths = tokens.attention_mask.sum(1)
    assert (tokens.input_ids[:, 0] == tokenizer.bos_token_id).all()
    assert (tokens.input_ids[torch.arange(len(captions)), lengths - 1] == tokenizer.eos_token_id).all()  # EOT
    assert len(tokenizer("a red circle moves left")["input_ids"]) == 2 + 5  # whole-word merges: one token a word


def test_full_clip_folder_gives_both_towers_in_the_projection_width(clip_dirs: dict[str, Path]) -> None:
    backbones = _backbones(clip_dirs["full"], clip_dirs["full"])
    text, frame = backbones.text, backbones.frame
    assert (text.dim, frame.dim) == (PROJECTION, PROJECTION)  # pooled and tokens/patches share the projection dim
    assert frame.interpolate and frame.input_size == PRETRAINED_SIZE  # 16 px frames, 32 px checkpoint
    assert frame.mean.flatten().tolist() == pytest.approx(CLIP_MEAN)
    assert frame.std.flatten().tolist() == pytest.approx(CLIP_STD)
    saved = CLIPModel.from_pretrained(clip_dirs["full"]).eval()
    tokenizer = CLIPTokenizer.from_pretrained(clip_dirs["full"])
    enc = tokenizer(["a red circle", "square"], padding="max_length", max_length=6, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]  # [2, 6]: BOS a red circle EOT PAD / BOS square EOT PAD..
    frames = torch.randint(0, 256, (2, 3, 16, 16, 3), dtype=torch.uint8)  # [B, M, H, W, 3]
    with torch.no_grad():
        t_out, f_out = text(ids, mask), frame(frames)
        expected_text = saved.get_text_features(input_ids=ids, attention_mask=mask).pooler_output  # text_embeds
        pixels = (frames.flatten(0, 1).permute(0, 3, 1, 2) / 255 - frame.mean) / frame.std
        vision = saved.get_image_features(pixel_values=pixels, interpolate_pos_encoding=True)
        expected_patches = saved.visual_projection(saved.vision_model.post_layernorm(vision.last_hidden_state[:, 1:]))
    assert t_out.pooled.shape == (2, PROJECTION) and t_out.tokens.shape == (2, 6, PROJECTION)
    assert t_out.padding_mask.tolist() == (mask == 0).tolist()
    torch.testing.assert_close(t_out.pooled, expected_text)
    torch.testing.assert_close(t_out.pooled[1], t_out.tokens[1, mask[1].sum() - 1])  # EOT, the same projection
    assert f_out.pooled.shape == (2, 3, PROJECTION) and f_out.patches.shape == (2, 3, 4, PROJECTION)  # (16/8)^2
    torch.testing.assert_close(f_out.pooled.flatten(0, 1), vision.pooler_output)  # image_embeds
    torch.testing.assert_close(f_out.patches.flatten(0, 1), expected_patches)


def test_single_tower_folders_and_the_preprocessor_config(clip_dirs: dict[str, Path]) -> None:
    backbones = _backbones(clip_dirs["text"], clip_dirs["vision"], image_size=PRETRAINED_SIZE)
    assert (backbones.text.dim, backbones.frame.dim) == (PROJECTION, PROJECTION)
    assert not backbones.frame.interpolate  # same resolution as pretraining
    assert backbones.frame.mean.flatten().tolist() == pytest.approx(CLIP_MEAN)  # no preprocessor config: CLIP's
    saved = CLIPVisionModelWithProjection.from_pretrained(clip_dirs["vision"])
    for (name, a), (_, b) in zip(backbones.frame.clip.state_dict().items(), saved.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    custom = clip_dirs["vision"].parent / "vision_custom"
    shutil.copytree(clip_dirs["vision"], custom)
    (custom / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.1, 0.2, 0.3], "size": 48}))
    frame = _backbones(clip_dirs["text"], custom, image_size=PRETRAINED_SIZE).frame
    assert frame.mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3]) and frame.input_size == 48
    assert frame.std.flatten().tolist() == pytest.approx(CLIP_STD)


# ---- (b) every method: one training step and an evaluation through the CLI ---------------------------------------

METHODS = {
    "dual_mean": {"class": "dual_encoder", "pooling": "mean", "dim": 16},
    "dual_seq": {"class": "dual_encoder", "pooling": "seq", "dim": 16},
    "cret": {"class": "cret", "global_loss": "gees", "dim": 16, "num_centres": 2, "ccm_layers": 1, "ccm_heads": 2},
    "cret_nce": {"class": "cret", "global_loss": "nce", "dim": 16, "num_centres": 2, "ccm_layers": 1, "ccm_heads": 2},
    "cret_global": {"class": "cret", "global_loss": "gees", "dim": 16, "use_ccm": False},
}


def _clip_config(tmp_path: Path, clip_dir: Path, methods: dict) -> Path:
    """config/smoke.yaml with both towers from ``clip_dir``, one step, and only ``methods``."""
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["model"]["text"] = {"pretrained": str(clip_dir), "max_length": cfg["model"]["text"]["max_length"]}
    cfg["model"]["frame"] = {"pretrained": str(clip_dir)}
    cfg["train"].update(steps=1, eval_every=1, backbone_lr_scale=0.1)
    cfg["methods"] = methods
    path = tmp_path / "clip.yaml"
    path.write_text(yaml.safe_dump(cfg))
    config_lib.load(path)  # valid before any test relies on it
    return path


def _train_and_evaluate(config: Path, method: str, data: Path, run: Path, *extra: str) -> dict:
    common = ["--config", str(config), "--method", method, "--seed", "0", "--data", str(data)]
    assert main(["train", *common, "--out", str(run), *extra]) == 0
    state = torch.load(run / "model.pt", map_location="cpu", weights_only=False)["model"]
    assert {"backbones.text.clip.text_projection.weight", "backbones.frame.clip.visual_projection.weight"} <= set(state)
    assert main(["evaluate", *common, "--model", str(run / "model.pt"), "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert math.isfinite(metrics["t2v"]["R@1"])
    return metrics


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_and_evaluates_on_clip_towers(
    method: str, clip_dirs: dict[str, Path], smoke_data: Path, tmp_path: Path
) -> None:
    config = _clip_config(tmp_path, clip_dirs["full"], {method: METHODS[method]})
    _train_and_evaluate(config, method, smoke_data, tmp_path / method)


def test_cross_encoder_on_clip_towers(clip_dirs: dict[str, Path], smoke_data: Path, tmp_path: Path) -> None:
    """The smoke config's current cross_encoder entry, warm-started from a CLIP dual_seq as the workflow does."""
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())["methods"]
    cross = {name: entry for name, entry in smoke.items() if entry["class"] == "cross_encoder"}
    if not cross:
        pytest.skip("config/smoke.yaml has no cross_encoder entry at the moment")
    name, entry = next(iter(cross.items()))
    source = entry.get("init_from")
    methods = {source: smoke[source], name: entry} if source else {name: entry}
    config = _clip_config(tmp_path, clip_dirs["full"], methods)
    extra: tuple[str, ...] = ()
    if source:
        _train_and_evaluate(config, source, smoke_data, tmp_path / source)
        extra = ("--init-from", str(tmp_path / source / "model.pt"))
    _train_and_evaluate(config, name, smoke_data, tmp_path / name, *extra)


# ---- (c) an unknown or mismatched folder: one line naming the path ------------------------------------------------


def _train_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path, text: Path, frame: Path) -> str:
    config = _clip_config(tmp_path, text, {"dual_mean": METHODS["dual_mean"]})
    cfg = yaml.safe_load(config.read_text())
    cfg["model"]["frame"]["pretrained"] = str(frame)
    config.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    argv = ["train", "--config", str(config), "--method", "dual_mean", "--seed", "0", "--data", str(data)]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]  # after transformers' progress bars, if any
    assert line.startswith("vtrbench train: error: ")
    return line


@pytest.mark.parametrize(
    ("text", "frame", "says"),
    [
        ("full", None, "is neither a folder nor an available hub id"),  # a missing folder
        ("full", "gpt2", "holds model_type 'gpt2'; vit / clip / clip_vision_model"),
        ("text", "text", "holds model_type 'clip_text_model'; has no vision tower"),
    ],
)
def test_unusable_frame_tower_folder_is_one_line(capsys, clip_dirs, smoke_data, tmp_path, text, frame, says) -> None:
    folder = clip_dirs[frame] if frame else tmp_path / "no-such-clip"
    err = _train_error(capsys, tmp_path, smoke_data, clip_dirs[text], folder)
    first, *rest = says.split("; ")
    assert f"model.frame.pretrained='{folder}' {first}" in err and all(part in err for part in rest), err


def test_folder_without_tokenizer_or_projection_is_an_error(clip_dirs: dict[str, Path]) -> None:
    no_tokenizer = BackboneConfig.from_dict({"text": {"pretrained": str(clip_dirs["text_no_projection"])}}).text
    with pytest.raises(FileNotFoundError, match=r"text_no_projection'? has no tokenizer"):
        load_tokenizer(no_tokenizer, vocab_file=None)
    with pytest.raises(ValueError, match=r"has no weights for text_projection\.weight"):
        _backbones(clip_dirs["text_no_projection"], clip_dirs["vision"])
    with pytest.raises(ValueError, match=r"model\.text\.pretrained=.*'clip_vision_model' \(a CLIP vision model"):
        _backbones(clip_dirs["vision"], clip_dirs["vision"])


# ---- (d) config/msrvtt-clip.yaml: valid, and the workflow plans it ------------------------------------------------


def test_msrvtt_clip_config_is_the_clip4clip_protocol() -> None:
    raw = yaml.safe_load((REPO / "config" / "msrvtt-clip.yaml").read_text())
    cfg = config_lib.load(REPO / "config" / "msrvtt-clip.yaml", {"dataset": {"data_root": "/data"}})
    assert cfg["protocol"] == "msrvtt-1kA-9k-train-clip-b32"
    assert {cfg["model"]["text"]["pretrained"], cfg["model"]["frame"]["pretrained"]} == {"openai/clip-vit-base-patch32"}
    data, text = cfg["dataset"], cfg["model"]["text"]
    assert (data["msrvtt_train"], data["resolution"], text["max_length"]) == ("9k", 224, 32)
    assert cfg["dataset"]["frames"] == cfg["train"]["frames"] == cfg["eval"]["frames"] == 12
    assert cfg["train"]["batch_size"] == 128 and cfg["train"]["steps"] == 5 * (180_000 // 4 // 32)  # 5 epochs
    assert cfg["train"]["lr"] * cfg["train"]["backbone_lr_scale"] == pytest.approx(1e-7)  # coef_lr 1e-3 on 1e-4
    assert set(raw["methods"]) == set(yaml.safe_load((REPO / "config" / "msrvtt.yaml").read_text())["methods"])
    assert {m.get("dim") for m in raw["methods"].values()} == {512}


def test_msrvtt_clip_config_dry_runs(tmp_path: Path) -> None:
    """``snakemake -n`` on a folder laid out like MSR-VTT (annotations only: the DAG reads no file before prepare)."""
    work, data = copy_workflow(tmp_path / "work"), tmp_path / "msrvtt"
    (data / "videos").mkdir(parents=True)
    (data / "MSRVTT_JSFUSION_test.csv").write_text("key,vid_key,video_id,sentence\nret0,msr7020,video7020,a man\n")
    (data / "MSRVTT_train.9k.csv").write_text("video_id\nvideo0\nvideo1\n")
    (data / "MSRVTT_data.json").write_text(json.dumps({"sentences": [{"video_id": "video0", "caption": "a dog"}]}))
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-n", "--configfile", "config/msrvtt-clip.yaml"]
    out = subprocess.run(
        [*cmd, "--config", f"dataset={{data_root: {data}}}"],
        cwd=work,
        capture_output=True,
        text=True,
        env={**snakemake_env(), "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "This was a dry-run" in text
    run_name = yaml.safe_load((REPO / "config" / "msrvtt-clip.yaml").read_text())["run_name"]
    for method in ("dual_mean", "dual_seq", "cret", "cret_nce"):
        assert re.search(rf"results/{run_name}/runs/{method}/\w+/seed0/model\.pt", text), method
