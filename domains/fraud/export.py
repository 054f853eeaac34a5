"""Fraud models as ONNX: logistic regression and gradient boosting through skl2onnx, the MLP through
torch.onnx.export. Every graph takes the raw feature rows (float32, the prepared column order) and
returns P(fraud): the MLP and the logistic regression standardise inside the graph, as they did in
Python. The window features themselves (counts and means over each card's and terminal's past)
are computed before the graph, as `aiflow score` computes them (domains/fraud/features.py)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import joblib
import numpy as np
import torch

from domains.common.errors import PipelineError
from domains.common.export import Convertible, Exportable, from_sklearn, from_torch
from domains.fraud.params import FraudParams
from domains.fraud.train import load_mlp, load_split, score_all


class _Probability(torch.nn.Module):
    """The MLP's logit through a sigmoid: the graph returns P(fraud), as scoring reports it."""

    def __init__(self, mlp: torch.nn.Module):
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x))


def export_models(p: FraudParams, model_dir: Path, prepared_dir: Path) -> Exportable:
    frame, names = load_split(prepared_dir)
    trained_on = torch.load(model_dir / "mlp.pt", map_location="cpu", weights_only=True)["features"]
    if list(trained_on) != list(names):
        raise PipelineError("fraud: the prepared split's features are not the ones the model was trained on")
    test = frame[frame["split"] == "test"]
    x = test[names].to_numpy(np.float32)
    reference = score_all(model_dir, x)  # what evaluate scored, the same function
    feed = {"x": x}
    models = [
        Convertible(
            name,
            kind,
            partial(_sklearn_graph, model_dir / f"{name}.joblib", len(names)),
            feed,
            reference[name],
            "probabilities",
            column=1,
        )
        for name, kind in (("logreg", "linear"), ("hgb", "tree"))
    ]
    mlp = _Probability(load_mlp(model_dir / "mlp.pt"))
    models.append(
        Convertible(
            "mlp",
            "torch",
            lambda: from_torch(mlp, (torch.from_numpy(x[:2]),), ["x"], ["probability"], {"x": {0: "items"}}),
            feed,
            reference["mlp"],
            "probability",
            quantize="dynamic",
        )
    )
    q = p.prepare
    preprocessing = {
        "input": {
            "name": "x",
            "dtype": "float32",
            "shape": ["items", len(names)],
            "description": "one row per transaction, the features below in this order, unstandardised",
        },
        "features": names,
        "feature_windows": {
            "customer_windows_days": q.customer_windows_days,
            "terminal_windows_days": q.terminal_windows_days,
            "delay_days": q.delay_days,
            "description": "tx_amount; tx_during_weekend, tx_during_night (hour < 6): 0/1; customer_nb_tx_<w>d / "
            "customer_avg_amount_<w>d: the card's transactions and mean amount in (t - w days, t], the "
            "current one included; terminal_nb_tx_<w>d / terminal_risk_<w>d: the terminal's transactions "
            "and fraud share in [t - delay_days - w, t - delay_days) (labels arrive late); ULB: v1..v28 "
            "as given (domains/fraud/features.py:build_features)",
        },
        "output": "P(fraud) per row: output 'probability' [items] (mlp), or column 1 of 'probabilities' [items, 2]",
        "decision": f"fraud when P(fraud) >= {p.evaluate.decision_threshold} (fraud.evaluate.decision_threshold)",
    }
    return Exportable(
        models=models,
        labels=test["label"].to_numpy(),
        threshold=p.evaluate.decision_threshold,
        class_names=["legit", "fraud"],
        metric="auroc",
        preprocessing=preprocessing,
    )


def _sklearn_graph(file: Path, n_features: int) -> bytes:
    return from_sklearn(joblib.load(file), n_features)  # opened after modelstore checked its hash
