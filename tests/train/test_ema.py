import pytest
import torch
from torch import nn

from genaccel.train.ema import EMA


def test_update_follows_the_warmed_up_formula_exactly():
    model = nn.Linear(3, 2)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)  # decay = min(0.9, 1/10) = 0.1
    for name, param in model.named_parameters():
        expected = start[name] * 0.1 + param.detach() * 0.9
        torch.testing.assert_close(ema.shadow[name], expected, rtol=0, atol=1e-6)
    assert ema.num_updates == 1 and ema.current_decay() == pytest.approx(2 / 11)


def test_copy_to_and_state_roundtrip():
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.zero_()
    ema.update(model)
    other = nn.Linear(3, 2)
    restored = EMA(other, decay=0.5)
    restored.load_state_dict(ema.state_dict())
    restored.copy_to(other)
    assert torch.equal(other.weight, ema.shadow["weight"]) and restored.num_updates == 1


def test_bad_decay_and_mismatched_state():
    with pytest.raises(ValueError, match="decay"):
        EMA(nn.Linear(2, 2), decay=1.0)
    with pytest.raises(ValueError, match="does not match"):
        EMA(nn.Linear(2, 2)).load_state_dict(EMA(nn.Linear(2, 3, bias=False)).state_dict())
