"""What "never harm the user's model" means, as a before/after check shared by the tests.

``snapshot(model)`` records everything a method could leave changed (weights and buffers, the
module tree, parameter objects and ``requires_grad`` flags, training flags, instance attributes,
per-module and global hooks); ``assert_unharmed(model, before)`` compares, and also checks that
no ``TorchFunctionMode`` is still active and that no parameter received a gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as module_globals

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs")
GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                "_global_backward_pre_hooks")


def snapshot(model: nn.Module) -> dict[str, Any]:
    mods = list(model.named_modules())
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "tree": [(n, type(m), id(m)) for n, m in mods],
        "params": [(n, id(p), p.requires_grad) for n, p in model.named_parameters()],
        "training": [(n, m.training) for n, m in mods],
        "attrs": [(n, sorted(vars(m))) for n, m in mods],
        "hooks": [(n, h, list(getattr(m, h, {}))) for n, m in mods for h in HOOK_DICTS],
        "global_hooks": [len(getattr(module_globals, h)) for h in GLOBAL_HOOKS],
    }


def assert_unharmed(model: nn.Module, before: dict[str, Any]) -> None:
    after = snapshot(model)
    assert torch._C._len_torch_function_stack() == 0, "a TorchFunctionMode was left active"
    for key in ("tree", "params", "training", "attrs", "hooks", "global_hooks"):
        assert after[key] == before[key], key
    assert list(after["state"]) == list(before["state"])
    for name, value in before["state"].items():
        got = after["state"][name]
        assert got.dtype == value.dtype and torch.equal(got, value), name
    assert all(p.grad is None for p in model.parameters())
