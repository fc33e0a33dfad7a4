"""bf16 training autocast: on the CPU, transformers' sdpa attention runs in fp32 inside it."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from vlkit.train.precision import autocast


def _attention_dtypes(model: torch.nn.Module, ids: torch.Tensor, bf16: bool) -> tuple[set, torch.Tensor]:
    """The dtypes the attention function's query arrived in and returned, and the loss."""
    seen = set()
    hooks = [
        layer.self_attn.o_proj.register_forward_pre_hook(lambda _, args: seen.add(args[0].dtype))
        for layer in model.model.layers
    ]
    with autocast("cpu", bf16):
        loss = model(input_ids=ids, labels=ids).loss
    for h in hooks:
        h.remove()
    return seen, loss


def test_cpu_bf16_autocast_keeps_attention_in_fp32_and_trains_close_to_fp32():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=32,
    )
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config)
    ids = torch.randint(0, 50, (3, 12))
    fp32_seen, fp32_loss = _attention_dtypes(model, ids, bf16=False)
    assert torch.float32 in fp32_seen
    bf16_seen, bf16_loss = _attention_dtypes(model, ids, bf16=True)
    # the attention output reaching o_proj is fp32 (torch's CPU autocast would run sdpa in bf16)
    assert torch.float32 in bf16_seen and torch.bfloat16 not in bf16_seen
    bf16_loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert abs(bf16_loss.item() - fp32_loss.item()) < 0.05 and bf16_loss.dtype == torch.float32
    # outside autocast the registered function is transformers' own path, bit for bit
    with torch.no_grad():
        again = model(input_ids=ids, labels=ids).loss
    torch.testing.assert_close(again, fp32_loss.detach(), rtol=0, atol=0)


def test_without_bf16_autocast_is_a_no_op():
    assert not torch.is_autocast_enabled("cpu")
    with autocast("cpu", False):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("cpu", True):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_auto_takes_bf16_where_this_cpu_multiplies_faster_in_it(monkeypatch):
    from vlkit.train import precision

    assert precision.use_bf16(True, "cpu") and not precision.use_bf16(False, "cpu")
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 6.0)  # a CPU with AMX
    assert precision.use_bf16("auto", "cpu")
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 0.6)  # one without: bf16 is slower
    assert not precision.use_bf16("auto", "cpu")
    assert not precision.use_bf16("auto", "mps")


def test_the_measured_speedup_is_this_machines():
    from vlkit.train.machine import matmul_peak
    from vlkit.train.precision import cpu_bf16_speedup

    speedup = cpu_bf16_speedup()
    assert speedup > 0 and speedup == cpu_bf16_speedup()  # measured once per process
    assert matmul_peak(64, reps=1, dtype=torch.bfloat16)[0] > 0


def test_fixed_shapes_auto_follows_bf16_on_the_cpu_and_prepare_applies_it(tiny_vlm_cfg, monkeypatch):
    from vlkit.train import precision
    from vlkit.train.generative import SHAPE_MULTIPLE
    from vlkit.train.loop import prepare

    assert precision.use_fixed_shapes("auto", True, "cpu")
    assert not precision.use_fixed_shapes("auto", False, "cpu")
    assert not precision.use_fixed_shapes("auto", True, "cuda")  # cuBLAS builds nothing per shape
    assert precision.use_fixed_shapes(True, False, "cpu") and not precision.use_fixed_shapes(
        False, True, "cpu"
    )
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 6.0)  # a CPU with AMX
    tiny_vlm_cfg.train.bf16 = "auto"
    assert prepare(tiny_vlm_cfg).objective.shape_multiple == SHAPE_MULTIPLE
    tiny_vlm_cfg.vlm.fixed_shapes = False
    assert prepare(tiny_vlm_cfg).objective.shape_multiple == 1
    tiny_vlm_cfg.train.bf16, tiny_vlm_cfg.vlm.fixed_shapes = False, "auto"
    assert prepare(tiny_vlm_cfg).objective.shape_multiple == 1
