"""Min-SNR-gamma loss weighting: the weight makes every target's loss min(SNR, gamma) times the denoised
image's squared error, and a gamma above every SNR is plain epsilon MSE."""

import json

import pytest
import torch

from genaccel.train.diffusion import TrainConfig, diffusion_loss, make_scheduler, min_snr_weights


class Constant(torch.nn.Module):
    """A DiT-shaped model that predicts a fixed tensor, whatever it is given."""

    def __init__(self, prediction):
        super().__init__()
        self.prediction = prediction

    def forward(self, sample, timestep, class_labels):
        return type("Out", (), {"sample": self.prediction})()


def denoised(scheduler, noisy, prediction, timesteps):
    """The clean-image estimate a prediction implies (DDPM's formulas, written out here)."""
    alpha_bar = scheduler.alphas_cumprod[timesteps].double().view(-1, 1, 1, 1)
    if scheduler.config.prediction_type == "epsilon":
        return (noisy - (1 - alpha_bar).sqrt() * prediction) / alpha_bar.sqrt()
    return alpha_bar.sqrt() * noisy - (1 - alpha_bar).sqrt() * prediction


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_weighted_loss_is_min_snr_times_the_denoised_error(prediction_type):
    scheduler = make_scheduler(TrainConfig(output_dir="unused", prediction_type=prediction_type))
    images = torch.rand(6, 3, 4, 4, dtype=torch.float64) * 2 - 1
    prediction = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    loss = diffusion_loss(Constant(prediction.float()), scheduler, images.float(), torch.zeros(6, dtype=torch.long),
                          torch.Generator().manual_seed(3), null_label=1, class_dropout=0.0, min_snr_gamma=5.0)
    generator = torch.Generator().manual_seed(3)  # the same draws diffusion_loss made
    noise = torch.randn(images.shape, generator=generator).double()
    timesteps = torch.randint(0, 1000, (6,), generator=generator)
    alpha_bar = scheduler.alphas_cumprod[timesteps].double()
    noisy = alpha_bar.sqrt().view(-1, 1, 1, 1) * images + (1 - alpha_bar).sqrt().view(-1, 1, 1, 1) * noise
    error = (denoised(scheduler, noisy, prediction, timesteps) - images).pow(2).flatten(1).mean(1)
    expected = ((alpha_bar / (1 - alpha_bar)).clamp(max=5.0) * error).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-4, atol=0)
    assert 1 <= (alpha_bar / (1 - alpha_bar) > 5).sum() <= 5  # the draw has clipped and unclipped timesteps


def test_gamma_above_every_snr_is_plain_epsilon_mse():
    scheduler = make_scheduler(TrainConfig(output_dir="unused"))
    images, prediction = torch.rand(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    arguments = (Constant(prediction), scheduler, images, torch.zeros(5, dtype=torch.long))
    plain = diffusion_loss(*arguments, torch.Generator().manual_seed(0), 1, 0.0)
    weighted = diffusion_loss(*arguments, torch.Generator().manual_seed(0), 1, 0.0, min_snr_gamma=1e12)
    torch.testing.assert_close(weighted, plain)
    assert torch.equal(min_snr_weights(scheduler, torch.arange(1000), 1e12), torch.ones(1000))


def test_weights_clip_only_the_low_noise_steps():
    scheduler = make_scheduler(TrainConfig(output_dir="unused", prediction_type="v_prediction"))
    weights = min_snr_weights(scheduler, torch.arange(1000), 5.0)
    snr = scheduler.alphas_cumprod.double() / (1 - scheduler.alphas_cumprod.double())
    torch.testing.assert_close(weights[snr <= 5].double(), (snr / (snr + 1))[snr <= 5].double().float().double())
    assert (weights[snr > 5] < 5 / 6 + 1e-6).all() and (weights > 0).all()


@pytest.mark.parametrize("values, message", [({"loss_weighting": "snr"}, "loss_weighting must be one of"),
                                             ({"min_snr_gamma": 0.0}, "min_snr_gamma must be > 0")])
def test_bad_weighting_settings_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(output_dir="unused", **values).validate()


def test_the_training_loop_applies_the_weighting_and_its_gamma(tmp_path):
    """One-step runs from the same seed see the same draws: with epsilon prediction and a gamma above
    every SNR the weighted loss is the plain one exactly; with v-prediction and gamma 5 it is lower."""
    from genaccel.train.diffusion import train

    tiny = dict(data="shapes", num_images=40, image_size=16, width=32, depth=1, heads=2, patch_size=4, batch_size=4,
                max_steps=1, log_every=1, sample_steps=1, checkpoint_every=0)

    def logged_loss(name, **values):
        train(TrainConfig(output_dir=str(tmp_path / name), **tiny, **values))
        return json.loads((tmp_path / name / "log.jsonl").read_text())["loss"]

    plain = logged_loss("plain")
    assert logged_loss("huge-gamma", loss_weighting="min-snr", min_snr_gamma=1e12) == pytest.approx(plain, rel=1e-6)
    v_plain = logged_loss("v-plain", prediction_type="v_prediction")
    assert logged_loss("v-min-snr", prediction_type="v_prediction", loss_weighting="min-snr") < v_plain
