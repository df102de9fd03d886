"""The optimizers kubik lora train offers, on real peft LoRA layers (no checkpoint needed):
each lowers a regression loss, and a resumed optimizer continues exactly as the original."""
from __future__ import annotations

import copy

import pytest
import torch

from kubik_core.lora_train import network
from kubik_core.lora_train.train import TrainSettings, _optimizer


class Attention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.to_q = torch.nn.Linear(16, 16)
        self.to_k = torch.nn.Linear(16, 16)

    def forward(self, x):
        return self.to_q(x) + self.to_k(x)


def _setup(optimizer: str):
    torch.manual_seed(0)
    model = Attention()
    network.add_lora(model, rank=4, alpha=4.0, targets=("to_q", "to_k"))
    settings = TrainSettings(data="d", base="b", output="o", name="n", optimizer=optimizer)
    groups = [{"params": list(network.lora_parameters(model).values()), "lr": 1e-2}]
    return model, settings, _optimizer(settings, groups, torch.device("cpu"))


def _step(model, optimizer, x, y) -> float:
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@pytest.mark.parametrize("choice, name, kind", [("adafactor", "Adafactor", "Adafactor"),
                                                ("auto", "AdamW", "AdamW"), ("adamw", "AdamW", "AdamW")])
def test_each_optimizer_trains_lora_layers_and_resumes_exactly(choice, name, kind):
    model, settings, optimizer = _setup(choice)
    assert settings.optimizer_name == name and type(optimizer).__name__ == kind
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64, 16, generator=generator)
    y = torch.randn(64, 16, generator=generator)
    losses = [_step(model, optimizer, x, y) for _ in range(30)]
    assert losses[-1] < 0.9 * losses[0]
    # resume: a fresh optimizer with the saved state takes the same next step
    saved_model, saved_state = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    _step(model, optimizer, x, y)
    expected = {k: v.clone() for k, v in network.lora_parameters(model).items()}
    resumed, _, fresh = _setup(choice)
    resumed.load_state_dict(saved_model)
    fresh.load_state_dict(saved_state)
    _step(resumed, fresh, x, y)
    for key, value in network.lora_parameters(resumed).items():
        torch.testing.assert_close(value, expected[key], msg=key)


def test_an_unknown_optimizer_is_named_with_the_choices():
    with pytest.raises(ValueError, match="^--optimizer must be one of auto, adamw, adamw8bit, adafactor$"):
        TrainSettings(data="d", base="b", output="o", name="n", optimizer="sgd").check()


def test_the_lora_ema_warms_up_then_averages_with_its_decay():
    from kubik_core.lora_train.train import LoraEMA

    weight = torch.nn.Parameter(torch.zeros(3))
    ema = LoraEMA([weight], decay=0.9)
    expected = torch.zeros(3)
    for n, target in enumerate([1.0, 2.0, 3.0, 4.0, 5.0] + [6.0] * 40):
        with torch.no_grad():
            weight.fill_(target)
        ema.update()
        decay = min(0.9, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * target
        torch.testing.assert_close(ema.values[0], expected)
    assert float(ema.values[0][0]) > 5.9                         # the average caught up with the weights
    restored = LoraEMA([weight], decay=0.9)
    restored.load(ema.state())
    assert restored.updates == 45
    with torch.no_grad():
        weight.fill_(0.0)
    restored.copy_to_parameters()
    torch.testing.assert_close(weight.detach(), ema.values[0])
