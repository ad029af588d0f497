"""Training, evaluation and sweeps: ``msvssm train / evaluate / sweep`` and their Python API.

* :mod:`.config`     ``TrainConfig``: the validated run configuration, profiles, ``--set`` parsing
* :mod:`.data`       splits decoded into memory, the paper's augmentation applied per sample to whole batches
* :mod:`.loop`       ``train_one_epoch`` and ``predict``: the loop to read
* :mod:`.run`        ``train``, ``evaluate_run``, ``load_run_model``: the plumbing (checkpoints, resume, records)
* :mod:`.checkpoint` atomic save, ``weights_only`` load, compatibility checks
* :mod:`.distributed` torchrun / DDP helpers
* :mod:`.sweep`      configs x seeds, a run cache, results tables with mean +- std
"""
from .config import ConfigError, TrainConfig
from .run import RunError, evaluate_run, is_complete, load_run_model, split_predictions, train

__all__ = ["ConfigError", "RunError", "TrainConfig", "evaluate_run", "is_complete", "load_run_model", "split_predictions", "train"]
