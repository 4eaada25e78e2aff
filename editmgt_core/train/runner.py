"""What the two trainers share: the learning-rate schedule, the wall-clock budget, the step loop, checkpoint tensors
and the loss plot.

The transformer trainer is mgt.py, the VQ tokenizer's vq.py; each keeps its own data, loss, configuration and
run-folder layout, and runs its optimizer steps through `run_steps`. Checkpoints hold tensors in safetensors and
everything else in JSON: nothing is pickled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file


class Schedule(Protocol):
    """The fields of a trainer's config the step loop reads."""

    lr: float  # peak learning rate
    warmup: int  # linear warmup steps
    steps: int  # total optimizer steps (the cosine's length without a time budget)
    log_every: int  # log period (steps)
    ckpt_every: int  # checkpoint period (steps)


def lr_at(step: int, cfg: Schedule, progress: float | None = None) -> float:
    """Linear warmup, then cosine decay to 10% over the steps (or over `progress` in [0, 1], for a time budget)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1) if progress is None else progress
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(t, 1.0))))


def deadline(minutes: float | None, start: float | None = None) -> float | None:
    """The wall-clock time (`time.time()`) `minutes` after `start` (default: now); None without a budget."""
    return None if minutes is None else (time.time() if start is None else start) + 60 * minutes


@dataclass(frozen=True)
class Budget:
    """A wall-clock budget: training stops at `deadline`, and the cosine decay runs from `begin` to it."""

    deadline: float | None  # time.time() at which training stops; None: no budget (the cosine spans the steps)
    begin: float  # time.time() of the first step (a trainer may spend part of its budget before it)

    def progress(self) -> float | None:
        """The spent fraction of the training part of the budget (>= 1: stop); None without a budget."""
        if self.deadline is None:
            return None
        return (time.time() - self.begin) / max(1.0, self.deadline - self.begin)


def run_steps(
    step: Callable[[int], object],
    opt: torch.optim.Optimizer,
    cfg: Schedule,
    start: int,
    budget: Budget,
    save: Callable[[int], None],
    log: Callable[[int, list, float], None],
    tag: str,
    log_last: bool = False,
) -> int:
    """Steps start .. cfg.steps - 1 of a warmup + cosine run; returns how many steps are done.

    Before each step the learning rate is set on every parameter group; step(i) runs optimizer step i and returns
    what `log` gets: log(done, [what each step returned since the last log], lr) every cfg.log_every steps (and
    after the last step when `log_last`). save(done) writes a checkpoint every cfg.ckpt_every steps and after the
    last step done, whether the loop reached cfg.steps or the budget ran out first.
    """
    done = saved = start
    window = []
    for i in range(start, cfg.steps):
        progress = budget.progress()
        if progress is not None and progress >= 1:
            print(f"[{tag}] time budget reached at step {i}", flush=True)
            break
        lr = lr_at(i, cfg, progress)
        for group in opt.param_groups:
            group["lr"] = lr
        window.append(step(i))
        done = i + 1
        if done % cfg.log_every == 0 or (log_last and done == cfg.steps):
            log(done, window, lr)
            window = []
        if done % cfg.ckpt_every == 0:
            save(done)
            saved = done
    if done != saved:  # the steps since the last periodic checkpoint (end of the steps or of the budget)
        save(done)
    return done


# ---------------------------------------------------------------------------------------------------- checkpoints


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write tensors (moved to the CPU, made contiguous) to a safetensors file, atomically via a rename."""
    tmp = path.with_name(path.stem + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp)
    tmp.replace(path)


def optimizer_tensors(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's state of each parameter, keyed '<parameter name>.<slot>' (scalars stored as shape [1])."""
    names = {id(p): n for n, p in model.named_parameters()}
    tensors = {}
    for group in opt.param_groups:
        for p in group["params"]:
            for slot, value in opt.state.get(p, {}).items():
                tensors[f"{names[id(p)]}.{slot}"] = value.reshape(-1) if value.ndim == 0 else value
    return tensors


def load_optimizer_tensors(model: torch.nn.Module, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]):
    """Restore `optimizer_tensors` into opt, each slot on its parameter's device."""
    params = dict(model.named_parameters())
    for key, value in tensors.items():
        name, slot = key.rsplit(".", 1)
        p = params[name]
        if slot == "step":  # a CPU scalar, except for the fused (GPU) Adam / AdamW
            opt.state[p][slot] = value.reshape(()).to(p.device if opt.defaults.get("fused") else "cpu")
        else:
            opt.state[p][slot] = value.to(p.device)


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------------------- loss plot


def plot_loss(history: list, path: Path, title: str = "training loss (masked-token cross-entropy)") -> None:
    """A small loss-curve PNG (steps vs. smoothed loss) from [[step, loss], ...], drawn with PIL."""
    if len(history) < 2:
        return
    steps, losses = np.array([h[0] for h in history]), np.array([h[1] for h in history])
    img = Image.new("RGB", (640, 360), "white")
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = 60, 20, 620, 320
    lo, hi = float(losses.min()), float(losses.max())
    px = lambda s, v: (
        x0 + (s - steps[0]) / max(1, steps[-1] - steps[0]) * (x1 - x0),
        y1 - (v - lo) / max(1e-9, hi - lo) * (y1 - y0),
    )
    d.rectangle([x0, y0, x1, y1], outline="black")
    d.line([px(s, v) for s, v in zip(steps, losses, strict=True)], fill=(30, 90, 200), width=2)
    d.text((x0, y1 + 8), f"step {steps[0]}", fill="black")
    d.text((x1 - 80, y1 + 8), f"step {steps[-1]}", fill="black")
    d.text((5, y0), f"{hi:.2f}", fill="black")
    d.text((5, y1 - 10), f"{lo:.2f}", fill="black")
    d.text((x0 + 200, 2), title, fill="black")
    img.save(path)
