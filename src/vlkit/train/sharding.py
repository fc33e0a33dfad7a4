"""FSDP (`train.distributed: fsdp`): each process holds 1/N of the weights, gradients and AdamW state.

This is torch's FSDP2 (`fully_shard`) applied directly, not accelerate's FSDP plugin: accelerate
turns the plugin on only for accelerator back ends (`AcceleratorState` switches to FSDP for
MULTI_GPU / XPU / NPU ..., never for MULTI_CPU), so on CPU with gloo it would silently wrap the
model in DDP instead. FSDP2 runs on CPU with gloo and on GPUs alike; accelerate still launches
the processes, places tensors and reduces the logged loss.

Each entry of a `ModuleList` (a transformer block: the LM's decoder layers, the vision tower's
encoder layers) is one FSDP unit, gathered for its forward and backward and freed after; the rest
(embeddings, a tied LM head, the connector, norms) is the root's unit. Gradients are averaged
with a reduce-scatter, so N processes on N slices of a global batch give 1 process's step.

Checkpoints stay the unsharded format every other run writes (a model folder, the optimizer
state keyed by parameter index): `gather` assembles the full weights and optimizer state on
process 0, and a sharded run resumes from any checkpoint, sharded or not, and vice versa.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

# strict=False: parameters that never had a gradient (unused in the loss) have no AdamW state
FULL = StateDictOptions(full_state_dict=True, strict=False)
FULL_ON_RANK0 = StateDictOptions(full_state_dict=True, cpu_offload=True)  # others get {}


def blocks(model: nn.Module) -> list[nn.Module]:
    """The entries of the outermost `ModuleList`s (transformer blocks): FSDP's units."""
    found, inside = [], set()
    for module in model.modules():  # top-down: a block's own inner lists are skipped
        if id(module) in inside or not isinstance(module, nn.ModuleList):
            continue
        for block in module:
            if any(True for _ in block.parameters()):
                found.append(block)
                inside.update(id(m) for m in block.modules())
    return found


def shard(model: nn.Module) -> None:
    """Shards `model` in place across the processes (its parameters become DTensors).

    Process 0's weights are broadcast first, as DDP does: FSDP2 shards what each process holds."""
    from torch.distributed.fsdp import fully_shard

    with torch.no_grad():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)
    for block in blocks(model):
        fully_shard(block)
    fully_shard(model)


def skeleton(model: nn.Module) -> nn.Module:
    """An unsharded copy of `model` whose parameters are on the meta device (no memory): process
    0 fills it with the gathered weights to save and evaluate. Call before `shard`."""
    # the memo maps each parameter to an empty one: the weights are never copied (tied stay tied)
    memo = {id(p): _meta(p) for p in model.parameters()}
    return copy.deepcopy(model, memo)


def release(model: nn.Module) -> None:
    """Puts a skeleton's parameters back on the meta device (buffers stay: they are small); tied
    parameters stay tied (one meta parameter per tensor)."""
    metas: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is not None:
                module._parameters[name] = metas.setdefault(id(p), _meta(p))


def _meta(p: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad)


def gather(model: nn.Module, optimizer: torch.optim.Optimizer | None, host: nn.Module | None) -> dict | None:
    """Collective (every process calls it): fills `host` (process 0's skeleton) with the full
    weights and returns the full optimizer state (if `optimizer`) in `optimizer.state_dict()`'s
    own format (parameters by index) on process 0; None elsewhere."""
    weights = get_model_state_dict(model, options=FULL_ON_RANK0)
    state = get_optimizer_state_dict(model, optimizer, options=FULL_ON_RANK0) if optimizer else None
    if host is None:
        return None
    # the gathered tensors are views into all-gather buffers: each gets its own storage to save;
    # `assign` puts a new tensor under every name, so tied weights (a tied LM head) are tied again
    tied = _tied_names(host)
    host.load_state_dict({k: v.clone() for k, v in weights.items()}, assign=True)
    for first, *others in tied:
        for name in others:
            owner, _, leaf = name.rpartition(".")
            setattr(host.get_submodule(owner), leaf, host.get_parameter(first))
    if state is None:
        return None
    state["state"] = {k: {n: _own(v) for n, v in slots.items()} for k, slots in state["state"].items()}
    return _by_index(state)


def _tied_names(model: nn.Module) -> list[list[str]]:
    """Groups of parameter names that share one tensor (a tied LM head and its embeddings)."""
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _own(value):
    return value.clone() if torch.is_tensor(value) else value


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Shards a full optimizer state (by parameter index, as checkpoints hold it) into `optimizer`."""
    names = {id(p): name for name, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    by_name = {
        "state": {order[int(i)]: slots for i, slots in state["state"].items()},
        "param_groups": [
            {**g, "params": [order[int(i)] for i in g["params"]]} for g in state["param_groups"]
        ],
    }
    set_optimizer_state_dict(model, optimizer, by_name, options=FULL)


def _by_index(state: dict) -> dict:
    """A full optimizer state keyed by parameter name → keyed by index, as `Optimizer.state_dict`."""
    index, groups = {}, []
    for group in state["param_groups"]:
        ids = [index.setdefault(name, len(index)) for name in group["params"]]
        groups.append({**group, "params": ids})
    return {"state": {index[name]: slots for name, slots in state["state"].items()}, "param_groups": groups}
