"""Library noise off by default: the C++ logs of TF/LiteRT and absl, oneDNN notices, and Python warnings and log
records below ERROR. Environment variables must be set before those libraries import; a user's own setting wins."""

from __future__ import annotations

import logging
import os
import warnings

_QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TF and LiteRT C++ logs, oneDNN's notice among them
    "GLOG_minloglevel": "3",  # glog and absl C++ logs
    "ABSL_MIN_LOG_LEVEL": "3",
    "GRPC_VERBOSITY": "ERROR",
    "RAY_DEDUP_LOGS": "1",
}


def quiet_libraries(verbose: bool) -> None:
    if verbose:
        warnings.resetwarnings()
        logging.getLogger().setLevel(logging.INFO)
        return
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    for name in ("absl", "torchao", "torch", "onnxruntime", "tensorflow", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)
