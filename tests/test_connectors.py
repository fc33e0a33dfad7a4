"""Connectors: output shapes and token counts per kind, parity with transformers' LLaVA projector."""

import pytest
import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

from vlkit.config import VLMConfig
from vlkit.models.connectors import CONNECTORS, build_connector, grid_coordinates

DV, DLM = 24, 16


def connector(kind: str, tokens: int = 5, layers: int = 2, n_features: int = 16) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_connector(
        VLMConfig(connector=kind, connector_tokens=tokens, connector_layers=layers), DV, DLM, n_features
    )


@pytest.mark.parametrize("kind", ["linear", "mlp2x_gelu"])
def test_per_feature_connectors_keep_one_token_per_feature(kind):
    conn = connector(kind)
    for n in (4, 9):
        out = conn(torch.randn(2, n, DV))
        assert out.shape == (2, n, DLM)
        assert conn.num_tokens(n) == n


@pytest.mark.parametrize("kind", ["qformer", "resampler", "gated_xattn"])
def test_query_connectors_give_a_fixed_token_count_whatever_the_image_size(kind):
    conn = connector(kind, tokens=5)
    for n in (4, 9):  # two image sizes
        out = conn(torch.randn(3, n, DV))
        assert out.shape == (3, 5, DLM)
        assert conn.num_tokens(n) == 5
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind", CONNECTORS)
def test_every_connector_reads_the_features_and_trains(kind):
    """The registry sweep: every connector gives (B, num_tokens(N), D_lm), one token per feature
    or a fixed count, distinct per image, with a gradient for every parameter."""
    conn = connector(kind, tokens=5)
    for n in (4, 16):  # square grids of even side, as a ViT's patches (merge2x2_mlp needs them)
        assert conn(torch.randn(3, n, DV)).shape == (3, conn.num_tokens(n), DLM)
        assert conn.num_tokens(n) in (n, 5, n // 4)
    feats = torch.randn(2, 16, DV)
    out = conn(feats)
    assert not torch.allclose(out[0], out[1])  # each image gets its own tokens
    out.square().mean().backward()
    no_grad = [n for n, p in conn.named_parameters() if p.grad is None]
    assert no_grad == []


def test_merge_connector_makes_one_token_per_2x2_block_of_neighbours():
    conn = connector("merge2x2_mlp").eval()
    grid = torch.randn(1, 4, 4, DV)  # a 4x4 grid of features, row-major as a ViT's patches
    out = conn(grid.reshape(1, 16, DV))
    assert out.shape == (1, 4, DLM) and conn.num_tokens(16) == 4
    changed = grid.clone()
    changed[0, 2:, 2:] += 1.0  # only the bottom-right 2x2 block
    moved = (conn(changed.reshape(1, 16, DV)) - out).abs().sum(-1)[0]
    assert (moved[:3] == 0).all() and moved[3] > 0  # that block's token alone changes
    for n in (9, 12):  # a 3x3 grid (odd side), not a square
        with pytest.raises(ValueError, match="square grid of even side"):
            conn(torch.randn(1, n, DV))


def test_qformer_uses_cross_attention_in_every_layer():
    conn = connector("qformer", layers=3)
    layers = conn.qformer.encoder.layer
    assert len(layers) == 3
    assert all(layer.has_cross_attention for layer in layers)


@pytest.mark.parametrize("kind", ["linear", "mlp2x_gelu"])
def test_llava_projector_reproduces_the_per_feature_connectors(kind):
    """The export copies our weights into LlavaMultiModalProjector (act 'linear' + identity linear_2
    for the linear connector)."""
    conn = connector(kind)
    llava = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=DV, num_attention_heads=2),
        text_config=LlamaConfig(hidden_size=DLM, num_attention_heads=2, num_key_value_heads=2),
        projector_hidden_act="gelu" if kind == "mlp2x_gelu" else "linear",
    )
    proj = LlavaMultiModalProjector(llava)
    state = dict(conn.state_dict())
    if kind == "linear":
        state["linear_2.weight"] = torch.eye(DLM)
        state["linear_2.bias"] = torch.zeros(DLM)
    proj.load_state_dict(state, strict=True)
    feats = torch.randn(2, 7, DV)
    torch.testing.assert_close(proj(feats), conn(feats))


def test_unknown_connector_names_the_valid_ones():
    with pytest.raises(
        ValueError, match="'perceiverx'.*linear, mlp2x_gelu, merge2x2_mlp, qformer, resampler"
    ):
        build_connector(VLMConfig(connector="perceiverx"), DV, DLM, 16)
    assert "gated_xattn" in CONNECTORS


@pytest.mark.parametrize("kind", ["linear", "mlp2x_gelu", "merge2x2_mlp"])
def test_connector_positions_add_one_learned_embedding_per_image_token(kind):
    torch.manual_seed(0)
    plain = build_connector(VLMConfig(connector=kind), DV, DLM, 16)
    torch.manual_seed(0)
    placed = build_connector(VLMConfig(connector=kind, connector_positions=True), DV, DLM, 16)
    feats = torch.zeros(1, 16, DV)
    same = torch.randn(1, 1, DV).expand(1, 16, DV)  # one feature at every place
    out = placed(same)
    m = placed.num_tokens(16)
    assert out.shape == (1, m, DLM) and m == plain.num_tokens(16)
    # the same feature at two places gives one token twice without positions, two with them
    assert torch.allclose(plain(same)[0, 0], plain(same)[0, -1])
    assert not torch.allclose(out[0, 0], out[0, -1])
    torch.testing.assert_close(placed(feats) - placed.positions, placed.inner(feats))
    grads = torch.autograd.grad(out.sum(), placed.positions)[0]
    assert grads.shape == (1, m, DLM) and grads.abs().sum() > 0


@pytest.mark.parametrize("kind", ["linear", "mlp2x_gelu", "merge2x2_mlp"])
def test_connector_coordinates_tell_apart_one_feature_at_two_places(kind):
    torch.manual_seed(0)
    tagged = build_connector(VLMConfig(connector=kind, connector_coordinates=True), DV, DLM, 16)
    same = torch.randn(1, 1, DV).expand(2, 16, DV)  # one feature at every place
    out = tagged(same)
    assert out.shape == (2, tagged.num_tokens(16), DLM)
    assert not torch.allclose(out[0, 0], out[0, -1])  # two places, two tokens
    # the coordinates are fixed features (no parameters), the same for every image
    torch.testing.assert_close(out[0], out[1])
    assert {n for n, _ in tagged.named_parameters()} == {
        f"inner.{n}" for n, _ in tagged.inner.named_parameters()
    }
    coords = grid_coordinates(16)
    assert coords.shape == (16, 32) and coords.abs().max() <= 1
    # a column's features are shared down the column and differ across columns
    torch.testing.assert_close(coords[0, :16], coords[4, :16])
    assert not torch.allclose(coords[0, :16], coords[1, :16])
    with pytest.raises(ValueError, match="built for 16 grid features, given 9"):
        tagged(torch.zeros(1, 9, DV))


def test_connector_positions_are_refused_for_query_connectors():
    with pytest.raises(ValueError, match="connector_positions applies to the linear, mlp2x_gelu"):
        build_connector(VLMConfig(connector="qformer", connector_positions=True), DV, DLM, 16)
    with pytest.raises(ValueError, match="connector_coordinates applies to the linear, mlp2x_gelu"):
        build_connector(VLMConfig(connector="resampler", connector_coordinates=True), DV, DLM, 16)
