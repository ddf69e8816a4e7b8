"""fine-tune's saved training state: written after each epoch into the output folder, read back by a
rerun of the same rows and settings, so an interrupted run resumes after its last finished epoch."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)
STATE_DIR = ".finetune-state"


class Progress(Protocol):
    """What a run has done so far (fine-tune's result)."""

    epoch_losses: list[float]
    steps: int
    seconds: float
    resumed_from_epoch: int


def fingerprint(config: Any, rows: Sequence[Any], labels: Sequence[str]) -> str:
    """The run a saved state belongs to: its settings (not progress display or device), labels and rows."""
    settings = {k: v for k, v in asdict(config).items() if k not in ("progress", "device")}
    digest = hashlib.sha256(json.dumps([settings, list(labels), list(rows)], sort_keys=True).encode())
    return digest.hexdigest()[:16]


class TrainingState:
    """The model, optimizer and scheduler state of one run, in ``target/.finetune-state/state.pt``."""

    def __init__(self, target: Path, run: str, net: Any, optimizer: Any, scheduler: Any) -> None:
        self.path = target / STATE_DIR / "state.pt"
        self.run, self.net, self.optimizer, self.scheduler = run, net, optimizer, scheduler

    def save(self, epoch: int, progress: Progress) -> None:
        import torch

        self.path.parent.mkdir(exist_ok=True)
        state = {
            "fingerprint": self.run,
            "epoch": epoch,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "losses": progress.epoch_losses,
            "steps": progress.steps,
            "seconds": progress.seconds + 0.0,
        }
        partial = self.path.with_name("state.pt.tmp")
        torch.save(state, partial)
        os.replace(partial, self.path)

    def resume(self, progress: Progress) -> int:
        """The epoch to start at: after the last saved one when the saved state is for this very run."""
        import torch

        if not self.path.is_file():
            return 0
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != self.run:
            logger.warning(
                "saved training state in %s is for other rows or settings; starting over", self.path.parent
            )
            return 0
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        progress.epoch_losses = list(state["losses"])
        progress.steps = int(state["steps"])
        progress.resumed_from_epoch = int(state["epoch"])
        logger.info("resuming fine-tune after epoch %d", progress.resumed_from_epoch)
        return progress.resumed_from_epoch
