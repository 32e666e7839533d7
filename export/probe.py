"""The per-call probe: a model in exactly the deployment signature that computes next to nothing, exported and
benched like any variant, so that its latency is the fixed cost of one call through the same binding (the input
copies, the session or interpreter invoke, the output copy). What a real model takes beyond it is its compute."""

from __future__ import annotations

import torch
from torch import nn

PROBE_MODEL = "percall-probe"
PROBE_METHOD = "probe"
PROBE_RECORD = {
    "kind": "per-call cost",
    "measures": "the fixed cost of one call in the deployment signature: input copies, invoke, output copy",
    "computes": "forecast = history[:, -1:, :n_targets] + calendar[:, -pred_len:, :1] (two slices and one "
                "broadcast add over pred_len x n_targets values): both inputs are read, so no exporter or runtime "
                "can drop one or fold the graph to a constant",
    "accuracy": "none claimed: its output is not a forecast",
    "reference": "dense",
}
# No weights and no multiply-accumulates: only the additions of the output.
PROBE_MODEL_FACTS = {"parameters": 0, "nonzero_parameters": 0, "density": None, "macs": 0, "macs_if_sparse": 0}


class PerCallProbe(nn.Module):
    """history [1, seq_len, n_inputs], calendar [1, seq_len + pred_len, n_cal] -> forecast [1, pred_len, n_targets],
    as the real models; n_targets <= n_inputs, as the targets are among the inputs."""

    def __init__(self, pred_len: int, n_targets: int) -> None:
        super().__init__()
        self.pred_len, self.n_targets = pred_len, n_targets

    def forward(self, history: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        return history[:, -1:, : self.n_targets] + calendar[:, -self.pred_len:, :1]

    def config(self) -> dict:
        return {"pred_len": self.pred_len, "n_targets": self.n_targets, "computes": PROBE_RECORD["computes"]}
