"""The super-resolving decoder's training data: a world record's scenes at the tokenizer's size and at `scale` times
it (free pairs: the world draws any scene at any size), the outlines the edge measure reads, crops, and a feed that
renders the next steps' pairs in worker processes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from editmgt_core.world import drawing, samples


def world_pairs(seed: int, start: int, n: int, size: int, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(small (n, 3, size, size), large (n, 3, scale*size, scale*size)) in [-1, 1]: the sources and targets of
    records start, start+1, ... of stream `seed`, each scene rendered at both sizes."""
    small, large = [], []
    for i in range(start, start + (n + 1) // 2):
        rec = samples.record(seed, i, size)
        small += [rec.src, rec.tgt]
        large += [drawing.render(rec.src_scene, size * scale), drawing.render(rec.tgt_scene, size * scale)]
    to = lambda imgs: torch.from_numpy(np.stack(imgs[:n])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return to(small), to(large)


def outline_masks(seed: int, start: int, n: int, size: int) -> torch.Tensor:
    """(n, size, size) bool: the pixels on an object's outline (partly covered, or next to one) in each scene of
    `world_pairs(seed, start, n, ...)` at `size`; outline scenes give their drawn lines."""
    masks = []
    for i in range(start, start + (n + 1) // 2):
        rec = samples.record(seed, i)
        for scene in (rec.src_scene, rec.tgt_scene):
            edge = np.zeros((size, size), bool)
            for obj in scene.objects:
                cov = drawing.coverage(obj, size)
                edge |= (cov > 0.02) & (cov < 0.98)
            masks.append(edge)
    m = torch.from_numpy(np.stack(masks[:n])).float()[:, None]
    return F.max_pool2d(m, 3, 1, 1)[:, 0].bool()


def crop_windows(h: torch.Tensor, y: torch.Tensor, large: torch.Tensor, crop: int, gen: torch.Generator):
    """The same random crop x crop window of features h and image y (B, C, H, W), one per image, and the window
    of `large` that it decodes to; all unchanged when crop is 0 or the whole image."""
    size = h.shape[-1]
    if crop <= 0 or crop >= size:
        return h, y, large
    s = large.shape[-1] // size
    ys, xs = torch.randint(size - crop + 1, (2, h.shape[0]), generator=gen).tolist()
    pick = lambda t, k: torch.stack(
        [t[i, :, a * k : (a + crop) * k, b * k : (b + crop) * k] for i, (a, b) in enumerate(zip(ys, xs, strict=True))]
    )
    return pick(h, 1), pick(y, 1), pick(large, s)


class PairFeed:
    """The pairs of step i (`world_pairs` of its records), rendered `workers` steps ahead by a process pool when
    workers > 0: on a GPU a step takes less time than drawing its batch on one core. The same pairs either way."""

    def __init__(self, cfg):  # an SRConfig: seed, batch, size, scale, steps, workers
        self.cfg, self.ahead = cfg, {}
        self.pool = None
        if cfg.workers > 0:
            import concurrent.futures
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")  # no forked torch threads in the workers
            self.pool = concurrent.futures.ProcessPoolExecutor(cfg.workers, mp_context=ctx)

    def _args(self, i: int) -> tuple:
        c = self.cfg
        return c.seed, i * c.batch // 2, c.batch, c.size, c.scale

    def __call__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pool is None:
            return world_pairs(*self._args(i))
        for j in [j for j in self.ahead if j < i]:  # steps passed over (a resume elsewhere): not kept
            self.ahead.pop(j).cancel()
        for j in range(i, i + 2 * self.cfg.workers):
            if j not in self.ahead and j < self.cfg.steps:
                self.ahead[j] = self.pool.submit(world_pairs, *self._args(j))
        return self.ahead.pop(i).result() if i in self.ahead else world_pairs(*self._args(i))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
