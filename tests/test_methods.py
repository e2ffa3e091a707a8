"""Every method the suite ships on a tiny config: the interface contract, shapes and finite gradients.

The list is derived, not hand-written: every trainable entry of every shipped config (config/*.yaml), on tiny
backbones; a registered class that no shipped config uses fails the coverage test.
"""

from __future__ import annotations

import pytest
import torch
import yaml

from tests.conftest import REPO, method_batch, tiny_backbones
from vtrbench.methods import (
    DEFAULT_DESIGN,
    DESIGNS,
    EmbeddingMethod,
    NoOptions,
    PairMethod,
    build_method,
    design_of,
    gallery_floats_per_video,
    resolve,
)
from vtrbench.registry import METHODS

VARIANTS = {
    "dual_mean": {"class": "dual_encoder", "pooling": "mean", "dim": 16},
    "dual_seq": {"class": "dual_encoder", "pooling": "seq", "dim": 16},
    "cret": {"class": "cret", "dim": 16, "num_centres": 3},
    "cret_nce": {"class": "cret", "dim": 16, "num_centres": 3, "global_loss": "nce"},
    "cret_global": {"class": "cret", "dim": 16, "use_ccm": False},
    "cret_frames": {"class": "cret", "dim": 16, "num_centres": 3, "video_memory": "frames"},
}
B, M, L = 4, 4, 12


def shipped_methods() -> dict[str, tuple[dict, dict]]:
    """``{config:method: (entry, the config's method table)}`` for every trainable method of every shipped config."""
    out = {}
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["methods"]
    for path in sorted((REPO / "config").glob("*.yaml")):
        if path.name == "schema.yaml":
            continue
        content = yaml.safe_load(path.read_text())
        own = content.get("methods") or {}  # an overlay (no run_name) may add methods, on top of the default's
        methods = own if "run_name" in content else {**default, **own}
        for name, entry in own.items():
            if resolve(entry["class"]).kind in ("embedding", "pair"):
                out[f"{path.stem}:{name}"] = (entry, methods)
    return out


SHIPPED = shipped_methods()


def _batch() -> dict[str, torch.Tensor]:
    return method_batch(B, M, L, seed=0, padded={1: 6})


def test_every_registered_class_resolves_and_declares_its_options():
    for name in METHODS:
        assert resolve(name).options_class is not NoOptions, name  # imported, and its config keys are checked


def test_every_trainable_registered_class_is_shipped_and_contract_tested():
    trainable = {name for name in METHODS if resolve(name).kind in ("embedding", "pair")}
    assert trainable == {entry["class"] for entry, _ in SHIPPED.values()} >= {"dual_encoder", "cret", "cross_encoder"}


def _contract(method) -> None:
    assert design_of(method) in DESIGNS and design_of(method) != DEFAULT_DESIGN  # the report's design class
    batch = _batch()
    method.eval()  # scoring runs in eval mode (a method with dropout scores deterministically only there)
    gallery = method.encode_videos(batch["frames"])
    queries = method.encode_texts(batch["input_ids"], batch["attention_mask"])
    assert all(v.shape[0] == B for v in {**gallery, **queries}.values())
    scores = method.score(queries, gallery)
    assert scores.shape == (B, B) and torch.isfinite(scores).all()
    if isinstance(method, EmbeddingMethod):  # the flat vectors are what a FAISS index stores
        flat = method.gallery_vectors(gallery)
        torch.testing.assert_close(method.query_vectors(queries) @ flat.T, scores)
        assert gallery_floats_per_video(gallery) == flat.shape[1]
    else:  # a pair method: full scoring is scoring every video as a candidate
        assert isinstance(method, PairMethod)
        cand = torch.tensor([[1, 0], [2, 1], [3, 2], [0, 3]])
        torch.testing.assert_close(method.score_candidates(queries, gallery, cand), scores.gather(1, cand))
    method.train()
    terms = method.loss(batch)
    assert terms and all(k.endswith("_loss") for k in terms)
    sum(terms.values()).backward()
    grads = [p.grad for p in method.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_method_contract(name):
    torch.manual_seed(0)
    _contract(build_method(tiny_backbones(), VARIANTS[name]))


@pytest.mark.parametrize("key", sorted(SHIPPED))
def test_shipped_method_contract(key):
    entry, methods = SHIPPED[key]
    torch.manual_seed(0)
    _contract(build_method(tiny_backbones(), entry, methods))


def test_every_registered_class_declares_a_documented_design():
    expected = {
        "dual_encoder": "single vector",
        "cret": "centres",
        "late_interaction": "multi-vector",
        "xpool": "query-conditioned",
        "cross_encoder": "cross-encoder",
        "rerank": "two-stage",
        "external": DEFAULT_DESIGN,  # an external method declares its design in its config entry
    }
    assert set(expected) == set(METHODS)
    for name, design in expected.items():
        cls = resolve(name)
        assert cls.design == design and design in DESIGNS, name
        if cls.kind != "external":
            assert "design" in vars(cls), f"{name} declares its own design (not the inherited default)"


def test_cret_without_its_centres_is_a_single_vector():
    assert design_of(build_method(tiny_backbones(), VARIANTS["cret"])) == "centres"
    assert design_of(build_method(tiny_backbones(), VARIANTS["cret_frames"])) == "centres"
    assert design_of(build_method(tiny_backbones(), VARIANTS["cret_global"])) == "single vector"


class _Undeclared(EmbeddingMethod):
    """A user's class that says nothing about its design."""


class _Misdeclared(EmbeddingMethod):
    design = "dense"


def test_a_class_without_a_design_gets_the_documented_default_and_a_wrong_one_is_refused():
    assert _Undeclared.design == DEFAULT_DESIGN == "unspecified" and DEFAULT_DESIGN in DESIGNS
    assert design_of(_Undeclared(tiny_backbones(), {})) == "unspecified"
    with pytest.raises(ValueError, match=r"_Misdeclared: design must be one of 'single vector'.*got 'dense'"):
        design_of(_Misdeclared(tiny_backbones(), {}))


def test_an_external_entry_declares_its_design_and_a_wrong_one_is_refused_before_any_job():
    from vtrbench import config as config_lib

    external = resolve("external")
    assert design_of(external(tiny_backbones(), {"rules": "toy.smk"})) == DEFAULT_DESIGN
    assert design_of(external(tiny_backbones(), {"rules": "toy.smk", "design": "two-stage"})) == "two-stage"
    config_lib.check_method_options({"methods": {"toy": {"class": "external", "design": "multi-vector"}}})
    with pytest.raises(config_lib.ConfigError, match=r"methods.toy: external: design must be one of .*'blob'"):
        config_lib.check_method_options({"methods": {"toy": {"class": "external", "design": "blob"}}})


def test_cret_gallery_holds_mean_and_centres():
    method = build_method(tiny_backbones(), VARIANTS["cret"])
    gallery = method.encode_videos(_batch()["frames"])
    assert gallery_floats_per_video(gallery) == 16 + 3 * 32  # mu_v (dim) + K centres of the text width


def test_mean_pooling_is_blind_to_frame_order_and_seq_is_not():
    torch.manual_seed(0)
    frames = _batch()["frames"]
    for name, blind in (("dual_mean", True), ("dual_seq", False)):
        method = build_method(tiny_backbones(), VARIANTS[name]).eval()
        forward = method.encode_videos(frames)["video"]
        backward = method.encode_videos(frames.flip(1))["video"]
        assert torch.allclose(forward, backward, atol=1e-5) == blind


def test_a_method_entry_declares_its_own_budget_and_the_budget_test_multiplies_it(smoke_config):
    """``steps`` in any trained method's entry is its budget (the at-plateau protocol gives a slow learner more);
    a class that declares ``steps`` itself (the cross-encoder's fine-tuning) keeps its meaning; a bad value is
    refused naming the key, before any job."""
    import copy

    from vtrbench import config as config_lib
    from vtrbench.runs import effective_train

    config = copy.deepcopy(smoke_config)
    config["methods"]["dual_seq"]["steps"] = 6
    config_lib.check_method_options(config)
    built = ("dual_seq", "dual_mean", "cross_encoder")
    methods = {name: build_method(tiny_backbones(), config["methods"][name], config["methods"]) for name in built}
    assert effective_train(config, methods["dual_seq"])["steps"] == 6
    assert effective_train(config, methods["dual_mean"])["steps"] == config["train"]["steps"]
    assert effective_train(config, methods["cross_encoder"])["steps"] == config["methods"]["cross_encoder"]["steps"]
    assert effective_train({**config, "budget_factor": 2}, methods["dual_seq"])["steps"] == 12
    config["methods"]["dual_seq"]["steps"] = 0
    with pytest.raises(
        config_lib.ConfigError, match=r"methods.dual_seq.steps: expected an integer >= 1 or null, got 0"
    ):
        config_lib.check_method_options(config)
