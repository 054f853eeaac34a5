"""The shared torch trainer: determinism, early stopping, checkpoint and resume."""

import numpy as np
import pytest
import torch
from torch import nn

from domains.common.params import TrainerParams
from domains.common.trainer import fit, predict


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def _train(tmp_path, epochs=6, patience=10, on_epoch_end=None, fingerprint="f", score=None, **schedule):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 1))
    x, y = _data()

    def loss(out, target):
        return nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), target)

    score = score or (lambda m: -float(loss(m(x), y)))
    params = TrainerParams(epochs=epochs, batch_size=64, lr=0.01, patience=patience, device="cpu", **schedule)
    history = fit(
        model,
        (x, y),
        loss,
        score,
        params,
        seed=1,
        checkpoint=tmp_path / "ck.pt",
        fingerprint=fingerprint,
        on_epoch_end=on_epoch_end,
    )
    return model, history


def test_same_seed_same_weights(tmp_path):
    a, _ = _train(tmp_path)
    b, _ = _train(tmp_path)
    for pa_, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa_, pb)


def test_learns_and_removes_checkpoint(tmp_path):
    model, history = _train(tmp_path)
    x, y = _data()
    accuracy = float(((predict(model, x).squeeze(-1) > 0) == y.numpy().astype(bool)).mean())
    assert accuracy > 0.9
    assert history.best_epoch >= 1 and not (tmp_path / "ck.pt").exists()


@pytest.mark.parametrize(
    "schedule", [{}, {"lr_schedule": "cosine", "warmup_epochs": 1}], ids=["constant lr", "cosine with warm-up"]
)
def test_resume_after_interrupt_gives_the_same_model(tmp_path, schedule):
    """The checkpoint (weights, optimizer, scheduler, generators) loads with weights_only=True and resumes exactly."""
    reference, _ = _train(tmp_path / "ref", **schedule)

    def interrupt(epoch):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, on_epoch_end=interrupt, **schedule)
    assert (tmp_path / "ck.pt").exists()
    resumed, history = _train(tmp_path, **schedule)
    assert history.resumed_from_epoch == 4
    for p_ref, p_res in zip(reference.parameters(), resumed.parameters()):
        assert torch.equal(p_ref, p_res)


def test_stale_checkpoint_is_not_resumed(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, on_epoch_end=lambda e: (_ for _ in ()).throw(KeyboardInterrupt))
    _, history = _train(tmp_path, fingerprint="other data")
    assert history.resumed_from_epoch == 0


def test_early_stopping(tmp_path):
    _, history = _train(tmp_path, epochs=50, patience=2, score=lambda m: 0.0)  # never improves after epoch 1
    assert history.stopped_early and len(history.epochs) == 3 and history.best_epoch == 1


def _conv_fit(tmp_path, cpu_mixed_precision: bool):
    """A small conv net for 2 epochs, channels-last, with or without CPU mixed precision."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))
    x = torch.rand(32, 1, 12, 12)
    target = (x > 0.5).float()
    params = TrainerParams(epochs=2, batch_size=8, lr=0.01, patience=5, device="cpu", mixed_precision=True)
    history = fit(
        model,
        (x, target),
        lambda out, t: nn.functional.binary_cross_entropy_with_logits(out.float(), t),
        lambda m: -float(nn.functional.binary_cross_entropy_with_logits(m(x), target)),
        params,
        seed=1,
        checkpoint=tmp_path / "ck.pt",
        fingerprint="f",
        channels_last=True,
        cpu_mixed_precision=cpu_mixed_precision,
    )
    return model, history


def test_cpu_mixed_precision_only_where_asked_and_native(tmp_path):
    """bf16 autocast on a CPU only for the models that ask (the conv nets) and only on a CPU with native bf16;
    the history says which precision the steps ran in, and the same seed still gives the same weights."""
    from domains.common.trainer import cpu_has_bf16

    _, plain = _conv_fit(tmp_path, cpu_mixed_precision=False)
    assert plain.precision == "float32"
    a, mixed = _conv_fit(tmp_path, cpu_mixed_precision=True)
    assert mixed.precision == ("bfloat16" if cpu_has_bf16() else "float32")
    b, _ = _conv_fit(tmp_path, cpu_mixed_precision=True)
    assert all(torch.equal(pa_, pb) for pa_, pb in zip(a.parameters(), b.parameters()))
    assert all(p.dtype == torch.float32 for p in a.parameters())  # autocast: the weights stay float32
    assert all(p.is_contiguous() for p in a.parameters())  # channels-last in training only: saved = in memory
