"""Checkpoints: weights plus everything needed to rebuild the model and its data, loadable with weights_only=True."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tsprune_edge.architecture import architecture_record, conform
from tsprune_edge.atomic import write_atomic
from tsprune_edge.errors import UserError
from tsprune_edge.models import create_model

FORMAT = "tsprune-edge/checkpoint"
VERSION = 2
READABLE_VERSIONS = (1, 2)  # 2 added the architecture record and the pruning summary


@dataclass
class Checkpoint:
    model_name: str
    config: dict
    state_dict: dict
    data: dict  # ForecastData.describe()
    scaling: dict  # ForecastData.scaling()
    training: dict  # schedule, epochs run, history
    architecture: dict | None = None  # shape record of a pruned model (architecture.py); None when dense
    pruning: dict | None = None  # what pruning did (method, requested and achieved sparsity); None when dense

    def build_model(self) -> nn.Module:
        """The model, rebuilt at its recorded (possibly pruned) widths."""
        model = create_model(self.model_name, **self.config)
        if self.architecture is not None:
            conform(model, self.architecture)
        model.load_state_dict(self.state_dict)
        return model.eval()


def make_checkpoint(model: nn.Module, data: dict, scaling: dict, training: dict,
                    pruning: dict | None = None) -> Checkpoint:
    config = dataclasses.asdict(model.config)
    config["calendar_features"] = list(config["calendar_features"])
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    architecture = architecture_record(model) if pruning is not None else None
    return Checkpoint(model.name, config, state, data, scaling, training, architecture, pruning)


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> None:
    payload = {"format": FORMAT, "version": VERSION, **dataclasses.asdict(checkpoint)}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(path, lambda handle: handle.write(buffer.getvalue()))


def load_checkpoint(path: Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint; pass the model.pt that `tsprune-edge train` wrote")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any file torch cannot read safely is, for us, not a checkpoint
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a tsprune-edge checkpoint ({first_line[:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a tsprune-edge checkpoint (no '{FORMAT}' marker); "
                        "train one with `tsprune-edge train`")
    if payload.get("version") not in READABLE_VERSIONS:
        raise UserError(f"{path} is checkpoint version {payload.get('version')}; this tsprune-edge reads "
                        f"{', '.join(map(str, READABLE_VERSIONS))}")
    required = [f.name for f in dataclasses.fields(Checkpoint) if f.default is dataclasses.MISSING]
    absent = [name for name in required if name not in payload]
    if absent:
        raise UserError(f"{path} is a damaged tsprune-edge checkpoint ({absent[0]} is missing); train it again with "
                        "`tsprune-edge train`")
    fields = {f.name for f in dataclasses.fields(Checkpoint)}
    checkpoint = Checkpoint(**{k: v for k, v in payload.items() if k in fields})
    _check_shape(checkpoint, path)
    return checkpoint


_DATA_KEYS = ("name", "path", "seq_len", "label_len", "pred_len", "features", "target", "sha256")


def _check_shape(checkpoint: Checkpoint, path: Path) -> None:
    """Our marker is not enough: every field has its type, and the tensors fit the model they describe."""
    def bad(what: str) -> UserError:
        return UserError(f"{path} is a damaged tsprune-edge checkpoint ({what}); train it again with "
                         "`tsprune-edge train`")

    expected = {"model_name": str, "config": dict, "state_dict": dict, "data": dict, "scaling": dict,
                "training": dict}
    for name, kind in expected.items():
        if not isinstance(getattr(checkpoint, name, None), kind):
            raise bad(f"{name} is missing or not a {kind.__name__}")
    for name in ("architecture", "pruning"):
        if not isinstance(getattr(checkpoint, name), (dict, type(None))):
            raise bad(f"{name} is not a dict")
    missing = [k for k in _DATA_KEYS if k not in checkpoint.data]
    if missing:
        raise bad(f"data has no {missing[0]}")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint.state_dict.items()):
        raise bad("state_dict holds something other than named tensors")
    try:
        checkpoint.build_model()
    except UserError as exc:
        raise bad(str(exc)) from None
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise bad(f"its tensors do not fit a {checkpoint.model_name}: {text[:160]}") from None
