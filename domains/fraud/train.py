"""Fraud models: a torch MLP weighted for the class imbalance, and scikit-learn baselines."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from domains.common.contract import TrainEnv
from domains.common.trainer import fit, predict
from domains.fraud.params import FraudParams, FraudTrainParams

MODELS = ("logreg", "hgb", "mlp")  # every model is scored on the same test rows


class FraudMLP(nn.Module):
    """Standardises its inputs itself (train-set statistics are buffers), outputs a fraud logit."""

    mean: torch.Tensor  # buffer
    std: torch.Tensor  # buffer

    def __init__(self, n_features: int, hidden: list[int], dropout: float):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std).squeeze(-1)


def load_split(prepared_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    frame = pd.read_parquet(prepared_dir / "features.parquet")
    names = json.loads((prepared_dir / "features.json").read_text())["features"]
    return frame, names


def train_models(p: FraudParams, prepared_dir: Path, out_dir: Path, env: TrainEnv) -> None:
    frame, names = load_split(prepared_dir)
    train, val = frame[frame["split"] == "train"], frame[frame["split"] == "val"]
    x_train, y_train = train[names].to_numpy(np.float32), train["label"].to_numpy()
    t = p.train

    logreg = make_pipeline(StandardScaler(), LogisticRegression(C=t.logreg_c, class_weight="balanced", max_iter=2000))
    joblib.dump(logreg.fit(x_train, y_train), out_dir / "logreg.joblib")
    hgb = HistGradientBoostingClassifier(
        max_iter=t.hgb_max_iter, learning_rate=t.hgb_learning_rate, early_stopping=False, random_state=p.seed
    )
    joblib.dump(hgb.fit(x_train, y_train), out_dir / "hgb.joblib")

    model, history = train_mlp(
        t, p.seed, x_train, y_train, val[names].to_numpy(np.float32), val["label"].to_numpy(), env
    )
    torch.save(
        {
            "state_dict": model.cpu().state_dict(),
            "n_features": len(names),
            "hidden": t.hidden,
            "dropout": t.dropout,
            "features": names,
        },
        out_dir / "mlp.pt",
    )
    (out_dir / "history.json").write_text(json.dumps(history.to_json(), indent=2))


def train_mlp(
    t: FraudTrainParams,
    seed: int,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    env: TrainEnv,
):
    torch.manual_seed(seed)  # same initial weights for the same seed
    model = FraudMLP(x_train.shape[1], t.hidden, t.dropout)
    model.mean.copy_(torch.from_numpy(x_train.mean(axis=0)))
    model.std.copy_(torch.from_numpy(x_train.std(axis=0) + 1e-6))
    # Frauds are ~1 % of rows: weight them so both classes pull equally on the loss.
    positives = max(int(y_train.sum()), 1)
    pos_weight = torch.tensor((len(y_train) - positives) / positives)
    x_val_t = torch.from_numpy(x_val)

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(
            logits.float(), target, pos_weight=pos_weight.to(logits.device)
        )

    def val_ap(m: nn.Module) -> float:
        return float(average_precision_score(y_val, predict(m, x_val_t))) if y_val.any() else 0.0

    tensors = (torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.float32)))
    history = fit(
        model, tensors, loss_fn, val_ap, t, seed, env.checkpoint_dir / "mlp.ckpt", env.fingerprint, name="fraud-mlp"
    )
    return model, history


def load_mlp(path: Path) -> FraudMLP:
    saved = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain values only: no code
    model = FraudMLP(saved["n_features"], saved["hidden"], saved["dropout"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def score_all(train_dir: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Fraud scores in [0, 1] from every trained model, on the same rows."""
    scores = {name: joblib.load(train_dir / f"{name}.joblib").predict_proba(x)[:, 1] for name in ("logreg", "hgb")}
    scores["mlp"] = torch.sigmoid(
        torch.from_numpy(predict(load_mlp(train_dir / "mlp.pt"), torch.from_numpy(x)))
    ).numpy()
    return scores
