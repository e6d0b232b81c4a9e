"""LaMamba and PT-DiT blocks: adaLN-Zero identity at init, branch wiring, gradients, proxies, errors."""

import pytest
import torch

from genaccel.blocks.lamamba_block import LaMambaBlock
from genaccel.blocks.ptdit_block import PTDiTBlock, window_means


def _randomise_zero_parameters(module: torch.nn.Module, std: float = 0.05) -> None:
    with torch.no_grad():
        for param in module.parameters():
            if torch.all(param == 0):
                param.normal_(0, std)


def _grads_everywhere(module: torch.nn.Module, loss: torch.Tensor) -> None:
    loss.backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"no gradient reached {missing}"


@pytest.mark.parametrize("block", [
    lambda: LaMambaBlock(16, 2, cond_dim=8, window=4),
    lambda: PTDiTBlock(16, 2, window=2),
])
def test_fresh_block_is_the_identity(block):
    torch.manual_seed(0)
    block = block()
    x = torch.randn(2, 30, 16)
    assert torch.equal(block(x, torch.randn(2, block.adaln[1].in_features), (5, 6)), x)


def test_lamamba_block_gradients_reach_every_parameter_text_and_video():
    torch.manual_seed(0)
    block = LaMambaBlock(16, 2, cond_dim=8, window=(2, 2, 2), shift=True, spatial_dims=3, cross_attention_dim=6)
    _randomise_zero_parameters(block)
    out = block(torch.randn(2, 2 * 3 * 4, 16), torch.randn(2, 8), (2, 3, 4), torch.randn(2, 5, 6))
    _grads_everywhere(block, out.square().mean())


def test_lamamba_bias_free_path_uses_genaccel_window_attention_and_agrees_with_zero_bias():
    torch.manual_seed(0)
    biased = LaMambaBlock(16, 2, cond_dim=8, window=3, shift=True).double()
    plain = LaMambaBlock(16, 2, cond_dim=8, window=3, shift=True, relative_position_bias=False).double()
    _randomise_zero_parameters(biased)
    plain.load_state_dict({k: v for k, v in biased.state_dict().items() if not k.startswith("position_bias")})
    x, c = torch.randn(2, 35, 16, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    assert not torch.allclose(biased(x, c, (5, 7)), plain(x, c, (5, 7)))
    with torch.no_grad():
        biased.position_bias.table.zero_()
    assert torch.allclose(biased(x, c, (5, 7)), plain(x, c, (5, 7)), rtol=0, atol=1e-12)


def test_lamamba_shift_matters_only_when_the_window_is_smaller_than_the_grid():
    torch.manual_seed(0)
    a = LaMambaBlock(16, 2, cond_dim=8, window=4)
    _randomise_zero_parameters(a)
    b = LaMambaBlock(16, 2, cond_dim=8, window=4, shift=True)
    b.load_state_dict(a.state_dict())
    x, c = torch.randn(1, 64, 16), torch.randn(1, 8)
    assert not torch.allclose(a(x, c, (8, 8)), b(x, c, (8, 8)))
    assert torch.equal(a(x[:, :16], c, (4, 4)), b(x[:, :16], c, (4, 4)))


def test_window_means_golden_with_partial_windows():
    tokens = torch.arange(15, dtype=torch.float64).reshape(1, 15, 1)  # grid (3, 5), raster values
    means = window_means(tokens, (3, 5), (2, 2))
    # windows: rows {0,1} x cols {0,1},{2,3},{4}; rows {2} x the same
    expected = [(0 + 1 + 5 + 6) / 4, (2 + 3 + 7 + 8) / 4, (4 + 9) / 2, (10 + 11) / 2, (12 + 13) / 2, 14]
    assert means[0, :, 0].tolist() == expected


def test_ptdit_block_gradients_reach_every_parameter_with_text():
    torch.manual_seed(0)
    block = PTDiTBlock(16, 2, window=2, cross_attention_dim=6)
    _randomise_zero_parameters(block)
    out = block(torch.randn(2, 30, 16), torch.randn(2, 16), (5, 6), torch.randn(2, 4, 6))
    _grads_everywhere(block, out.square().mean())


def test_ptdit_text_mask_hides_masked_tokens():
    torch.manual_seed(0)
    block = PTDiTBlock(16, 2, window=2, cross_attention_dim=6)
    x, c, text = torch.randn(1, 16, 16), torch.randn(1, 16), torch.randn(1, 4, 6)
    mask = torch.tensor([[True, True, False, False]])
    changed = text.clone()
    changed[:, 2:] += 5.0
    assert torch.equal(block(x, c, (4, 4), text, mask), block(x, c, (4, 4), changed, mask))
    assert not torch.allclose(block(x, c, (4, 4), text), block(x, c, (4, 4), changed))


@pytest.mark.parametrize("block", [
    lambda **kw: LaMambaBlock(16, 2, cond_dim=16, window=4, **kw),
    lambda **kw: PTDiTBlock(16, 2, window=2, **kw),
])
def test_blocks_reject_mismatched_grid_and_text(block):
    x, c = torch.randn(1, 12, 16), torch.randn(1, 16)
    with pytest.raises(ValueError, match=r"grid \(5, 3\) does not match the 12 tokens"):
        block()(x, c, (5, 3))
    with pytest.raises(ValueError, match="encoder_hidden_states must be given exactly when"):
        block()(x, c, (3, 4), torch.randn(1, 2, 16))
    with pytest.raises(ValueError, match="encoder_hidden_states must be given exactly when"):
        block(cross_attention_dim=16)(x, c, (3, 4))


def test_lamamba_bias_runs_on_every_backend_alike():
    torch.manual_seed(0)
    blocks = [LaMambaBlock(16, 2, cond_dim=8, window=2, attention_backend=backend) for backend in ("split", "flex")]
    _randomise_zero_parameters(blocks[0])
    blocks[1].load_state_dict(blocks[0].state_dict())
    x, cond = torch.randn(1, 16, 16), torch.randn(1, 8)
    with torch.no_grad():  # FlexAttention has no CPU backward
        torch.testing.assert_close(blocks[1](x, cond, (4, 4)), blocks[0](x, cond, (4, 4)), rtol=1e-5, atol=1e-5)


def test_ptdit_block_on_a_video_grid_pools_one_proxy_per_3d_window():
    torch.manual_seed(0)
    block = PTDiTBlock(16, 2, window=(1, 2, 2))
    _randomise_zero_parameters(block)
    x = torch.randn(1, 2 * 4 * 4, 16)
    # one proxy per (1, 2, 2) window: frames x 2 x 2 windows, each the mean of its 4 tokens
    expected = x.view(1, 2, 2, 2, 2, 2, 16).mean(dim=(3, 5)).reshape(1, 8, 16)
    torch.testing.assert_close(window_means(x, (2, 4, 4), (1, 2, 2)), expected)
    out = block(x, torch.randn(1, 16), (2, 4, 4))
    assert out.shape == x.shape and not torch.allclose(out, x)
