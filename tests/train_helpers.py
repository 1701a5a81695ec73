"""What the training tests share: comparing checkpoint states exactly."""

from __future__ import annotations

import torch


def assert_same_state(a: object, b: object, where: str = "") -> None:
    """Assert two (nested dict / list / tensor) states are bitwise equal; `where` names the first difference."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{k}]")
    else:
        assert a == b, where
