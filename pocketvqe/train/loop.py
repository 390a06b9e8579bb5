"""Float training: seeded, resumable, DDP-ready; one optimizer step = one global batch of simulated clips.

>>> cfg = TrainConfig(model="dvqe-s16", steps=3000)
>>> summary = train(cfg, get_config("dvqe-s16"), "runs/dvqe-s16")            # doctest: +SKIP

The run folder holds ``train_config.json`` (resolved TrainConfig + ModelConfig), ``log.jsonl``
(one ``{"kind": "train", "step", "loss", "lr", "grad_norm", ...}`` line per step and one
``{"kind": "valid", ...}`` line per validation pass), ``step-XXXXXX.pt`` every ``ckpt_every``
steps, ``last.pt`` (the newest, written atomically) and ``summary.json`` at the end.

Data order is a pure function of the step: global step s uses simulator clips
``s*batch .. s*batch + batch - 1`` (epoch = index // simulator length), rank r of W takes the r-th
slice. So a resumed run sees exactly the clips the uninterrupted run would have, and 1 or N
processes see the same clips per step.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pocketvqe.data import SimConfig, Simulator, collate_mixtures, default_root
from pocketvqe.errors import PocketVQEError
from pocketvqe.fileio import atomic_write_text, json_safe, to_json
from pocketvqe.metrics import si_sdr
from pocketvqe.models import Enhancer, ModelConfig, get_config, list_configs, read_checkpoint, save_checkpoint
from pocketvqe.models.checkpoint import versions
from pocketvqe.models.dvector import dvector

from . import ddp as D
from .config import ECHO, TrainConfig
from .loss import CompressedSpectralLoss

STATE_KEY = "train_state"


# ------------------------------------------------------------------------------------ model side
def resolve_model_config(spec: str) -> ModelConfig:
    """A registered name, or a JSON file: a ModelConfig dict, a checkpoint sidecar ({"config": ...})
    or a run's train_config.json ({"model": ...})."""
    if spec in list_configs():
        return get_config(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise PocketVQEError(f"--config {spec!r} is neither a registered config ({', '.join(list_configs())}) "
                             "nor an existing JSON file")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PocketVQEError(f"--config {path}: not valid JSON ({exc})") from None
    if isinstance(d, dict) and isinstance(d.get("model"), dict):
        d = d["model"]
    elif isinstance(d, dict) and isinstance(d.get("config"), dict):
        d = d["config"]
    if not isinstance(d, dict) or "name" not in d:
        raise PocketVQEError(f"--config {path}: expected a model config object with a 'name' key")
    return ModelConfig.from_dict(d)


def served_scenarios(cfg: ModelConfig) -> tuple[str, ...]:
    """The scenarios a model can be trained on: echo needs a far-end branch, interferer personalization."""
    out = ("noise", "reverb") + (ECHO if cfg.has_far else ())
    return out + (("interferer",) if cfg.personalized else ())


def _device_ctx(device):
    return torch.device(device)


def speaker_embedding(enh: Enhancer, enroll: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """PVQE enrollment pass: enroll (B, M) PCM zero-padded, lengths (B,) -> mean feature (B, H).

    Averages the per-frame bottleneck features over the frames lying wholly inside each clip's
    ``lengths`` samples; differentiable, so the enrollment pass trains end to end.
    """
    if enh.cfg.speaker_embedding != "internal":          # separate speaker model: fixed, not trained
        return _dvectors(enh, enroll, lengths)
    hop = enh.cfg.hop
    B, M = enroll.shape
    pad = (-M) % hop
    if pad:
        enroll = nn.functional.pad(enroll, (0, pad))
    with _device_ctx(enroll.device):            # init_state / the zero speaker are made on this device
        feats, _ = enh.embed_frames(enroll, enh.init_state(B))      # (B, T, H)
    T = feats.shape[1]
    if lengths is None:
        n = torch.full((B,), max(1, M // hop), device=feats.device)
    else:
        n = (lengths.to(feats.device) // hop).clamp(1, T)
    mask = (torch.arange(T, device=feats.device)[None, :] < n[:, None]).to(feats.dtype)   # (B, T)
    return (feats * mask.unsqueeze(-1)).sum(1) / n.to(feats.dtype).unsqueeze(-1)


def _dvectors(enh: Enhancer, enroll: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """d-vectors (B, 256) of the enrollment clips from the separate speaker model (no gradient)."""
    pcm = enroll.detach().cpu().numpy()
    n = [int(x) for x in lengths] if lengths is not None else [pcm.shape[1]] * len(pcm)
    d = [dvector(p[:k], enh.cfg.sample_rate) for p, k in zip(pcm, n)]
    return torch.from_numpy(np.stack(d)).to(enroll.device)


def enhance_aligned(enh: Enhancer, mic: torch.Tensor, far: torch.Tensor | None,
                    speaker: torch.Tensor | None = None) -> torch.Tensor:
    """mic/far (B, N) -> output (B, N) aligned with the input (the algorithmic delay removed).

    The input is zero-padded by the delay (rounded up to whole hops) and the first ``delay`` output
    samples are dropped, so output sample n estimates target sample n.
    """
    cfg = enh.cfg
    delay, hop = cfg.algorithmic_latency_samples, cfg.hop
    B, N = mic.shape
    total = N + delay
    total += (-total) % hop
    mic_p = nn.functional.pad(mic, (0, total - N))
    far_p = None
    if cfg.has_far:
        far_p = nn.functional.pad(far, (0, total - N)) if far is not None else torch.zeros_like(mic_p)
    with _device_ctx(mic.device):
        state = enh.init_state(B)
    y, _ = enh(mic_p, far_p, state, speaker)
    return y[:, delay:delay + N]


class TrainModel(nn.Module):
    """One training forward: (PVQE: enrollment pass ->) target pass; this is what DDP wraps."""

    def __init__(self, enh: Enhancer):
        super().__init__()
        self.enh = enh

    def forward(self, mic, far, enroll=None, enroll_lengths=None, detach_speaker: bool = False):
        speaker = None
        if self.enh.cfg.personalized:
            if enroll is None:
                raise ValueError(f"{self.enh.cfg.name} is personalized: the batch needs enroll audio")
            speaker = speaker_embedding(self.enh, enroll, enroll_lengths)
            if detach_speaker:
                speaker = speaker.detach()
        return enhance_aligned(self.enh, mic, far if self.enh.cfg.has_far else None, speaker)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices/kernels only (not on biases, BatchNorm or LayerNorm)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def load_init_weights(enh: Enhancer, path: str | os.PathLike) -> dict:
    """Start from another checkpoint's weights: equal shapes are copied; a 2-D weight whose input dim
    grew (e.g. the GRU input of a personalized model initialised from its plain twin) gets the old
    leading columns. Returns counts and the keys left at their random init."""
    src = read_checkpoint(path)["state_dict"]
    own = enh.state_dict()
    copied, partial, skipped = 0, 0, []
    with torch.no_grad():
        for k, v in own.items():
            s = src.get(k)
            if s is not None and s.shape == v.shape:
                v.copy_(s)
                copied += 1
            elif s is not None and v.dim() == 2 and s.dim() == 2 and s.shape[0] == v.shape[0] \
                    and s.shape[1] < v.shape[1]:
                v[:, :s.shape[1]].copy_(s)
                partial += 1
            else:
                skipped.append(k)
    if copied == 0:
        raise PocketVQEError(f"--init {path}: no tensor matches this model's shapes; is it another model family?")
    return {"copied": copied, "partial": partial, "skipped": skipped}


def _batch_to(batch: dict, device) -> dict:
    out = dict(batch)
    for k in ("mic", "far", "target", "enroll", "enroll_lengths"):
        out[k] = batch[k].to(device, non_blocking=True)
    return out


class Trainer:
    """Model, optimizer and step counter; ``train_step`` / ``validate`` / ``save`` / ``load``.

    Usable without any data pipeline (tests overfit a fixed batch with it).
    """

    def __init__(self, cfg: TrainConfig, model_cfg: ModelConfig, env: D.DistEnv | None = None):
        self.cfg, self.model_cfg = cfg, model_cfg
        self.env = env or D.DistEnv(device="cuda:0" if cfg.device == "cuda" else cfg.device)
        self.device = torch.device(self.env.device)
        torch.manual_seed(cfg.seed)
        self.enh = Enhancer(model_cfg)
        self.init_info = load_init_weights(self.enh, cfg.init) if cfg.init else None
        self.enh.to(self.device)
        self.model = TrainModel(self.enh)
        if self.env.distributed:
            dev_ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=dev_ids)
        else:
            self.ddp = self.model
        self.loss_fn = CompressedSpectralLoss(model_cfg.n_fft, model_cfg.hop, cfg.loss_exponent,
                                              cfg.loss_mag_weight, keep_weight=cfg.loss_keep_weight).to(self.device)
        self.opt = torch.optim.AdamW(param_groups(self.enh, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
        self.step = 0
        self.loss_ema: float | None = None
        self.last_valid: dict | None = None

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.enh.parameters())

    # ------------------------------------------------------------------------------------ steps
    def train_step(self, batch: dict, stop: bool = False) -> dict:
        """One optimizer step on this rank's part of the global batch -> {loss (mean over ranks), ...}."""
        lr = self.cfg.lr_at(self.step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        b = _batch_to(batch, self.device)
        self.ddp.train()
        out = self.ddp(b["mic"], b["far"], b["enroll"], b["enroll_lengths"])
        loss = self.loss_fn(out, b["target"])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        gn = float(nn.utils.clip_grad_norm_(self.enh.parameters(), max_norm))   # grads already all-reduced
        skipped = not math.isfinite(gn)
        if skipped:
            self.opt.zero_grad(set_to_none=True)
        else:
            self.opt.step()
        self.step += 1
        red = D.all_reduce(self.env, torch.tensor([float(loss.detach()), float(stop)], dtype=torch.float64))
        g_loss = float(red[0]) / self.env.world
        if math.isfinite(g_loss):
            self.loss_ema = g_loss if self.loss_ema is None else 0.98 * self.loss_ema + 0.02 * g_loss
        return {"loss": g_loss, "lr": lr, "grad_norm": gn, "skipped": skipped, "stop": bool(red[1] > 0)}

    @torch.no_grad()
    def validate(self, batches: list[dict]) -> dict:
        """Mean loss (of the output and, as the bar to beat, of the unprocessed mic) and SI-SDR (output
        and input vs target, clips with an active target) over the fixed validation set, also per
        scenario; every rank holds a shard, results are combined over ranks."""
        D.broadcast_buffers(self.env, self.enh)
        self.model.eval()
        rows = []
        for batch in batches:
            b = _batch_to(batch, self.device)
            out = self.model(b["mic"], b["far"], b["enroll"], b["enroll_lengths"])
            losses = self.loss_fn(out, b["target"], reduction="none").cpu().numpy()
            in_losses = self.loss_fn(b["mic"], b["target"], reduction="none").cpu().numpy()
            est, mic, tgt = out.cpu().numpy(), batch["mic"].numpy(), batch["target"].numpy()
            for k, scen in enumerate(batch["scenario"]):
                active = float(np.mean(tgt[k] ** 2)) > 1e-10
                rows.append((scen, float(losses[k]), si_sdr(est[k], tgt[k]) if active else math.nan,
                             si_sdr(mic[k], tgt[k]) if active else math.nan, float(in_losses[k])))
        self.model.train()
        rows = [r for part in D.all_gather_objects(self.env, rows) for r in part]
        si = [(r[2], r[3]) for r in rows if math.isfinite(r[2]) and math.isfinite(r[3])]
        res = {"step": self.step, "valid_loss": float(np.mean([r[1] for r in rows])),
               "valid_loss_input": float(np.mean([r[4] for r in rows])), "clips": len(rows),
               "si_sdr": float(np.mean([o for o, _ in si])) if si else math.nan,
               "si_sdr_input": float(np.mean([i for _, i in si])) if si else math.nan}
        res["si_sdri"] = res["si_sdr"] - res["si_sdr_input"]
        scens = sorted({r[0] for r in rows})
        res["loss_by_scenario"] = {s: float(np.mean([r[1] for r in rows if r[0] == s])) for s in scens}
        res["input_loss_by_scenario"] = {s: float(np.mean([r[4] for r in rows if r[0] == s])) for s in scens}
        self.last_valid = res
        return res

    # ------------------------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        return {"step": self.step, "optimizer": self.opt.state_dict(), "train_config": self.cfg.to_dict(),
                "rng_torch": torch.get_rng_state(), "loss_ema": self.loss_ema, "world_size": self.env.world}

    def save(self, path: str | os.PathLike) -> Path:
        """Write a resumable checkpoint (call on every rank under DDP: buffers sync first; rank 0 writes)."""
        D.broadcast_buffers(self.env, self.enh)
        if not self.env.is_main:
            return Path(path)
        meta = {"trained_steps": self.step, "train_loss_ema": self.loss_ema, "valid": self.last_valid,
                "train_config": self.cfg.to_dict(), "world_size": self.env.world}
        return save_checkpoint(path, self.enh, meta=meta, extra={STATE_KEY: self.state()})

    def load(self, ckpt: dict) -> None:
        """Continue from a training checkpoint (weights, optimizer, step, RNG)."""
        st = ckpt.get(STATE_KEY)
        if st is None:
            raise PocketVQEError("the checkpoint holds weights only (no optimizer state): use --init to start a "
                                 "new run from its weights, or resume from a step-*.pt / last.pt of a run")
        cfg = ModelConfig.from_dict(ckpt["config"])
        if cfg != self.model_cfg:
            raise PocketVQEError(f"the checkpoint is a {cfg.name!r} model, this run trains {self.model_cfg.name!r}")
        self.enh.load_state_dict(ckpt["state_dict"])
        self.opt.load_state_dict(st["optimizer"])
        self.step, self.loss_ema = int(st["step"]), st.get("loss_ema")
        torch.set_rng_state(st["rng_torch"])
        meta = ckpt.get("meta") or {}
        self.last_valid = meta.get("valid")


# ------------------------------------------------------------------------------------- data side
def sim_config(cfg: TrainConfig, model_cfg: ModelConfig):
    """The simulator settings for this run: only scenarios the model serves (and the user asked for)."""
    served = served_scenarios(model_cfg)
    wanted = cfg.scenarios or served
    bad = [s for s in wanted if s not in served]
    if bad:
        why = "it has no far-end branch" if any(s in ECHO for s in bad) else "it is not personalized"
        raise PocketVQEError(f"--scenarios {','.join(bad)}: model {model_cfg.name!r} cannot learn "
                             f"{', '.join(bad)} ({why}); it serves {', '.join(served)}")
    base = SimConfig()
    weights = {f"p_{s}": (getattr(base, f"p_{s}") if s in wanted else 0.0)
               for s in ("noise", "reverb", "echo_fe_st", "echo_ne_st", "double_talk")}
    if not any(weights.values()):
        raise PocketVQEError(f"--scenarios {','.join(wanted)}: add at least one of noise, reverb, echo_ne_st, "
                             "echo_fe_st, double_talk")
    # plain models never read the enrollment: keep it minimal so the simulator does not waste time on it
    enroll = cfg.enroll_seconds if model_cfg.personalized else (0.5, 0.5)
    return SimConfig(clip_seconds=cfg.clip_seconds, personalized=model_cfg.personalized,
                     p_interferer=base.p_interferer if "interferer" in wanted else 0.0,
                     enroll_seconds=enroll, **weights)


class StepClips(torch.utils.data.Dataset):
    """Global clip index g -> simulator clip g % len of epoch g // len (pure function of g)."""

    def __init__(self, sim):
        self.sim = sim

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, g: int):
        epoch, i = divmod(int(g), len(self.sim))
        if self.sim.epoch != epoch:
            self.sim.set_epoch(epoch)
        return self.sim[i]


class StepSampler(torch.utils.data.Sampler):
    """This rank's clip indices for global steps ``start .. steps - 1``."""

    def __init__(self, start: int, steps: int, batch: int, rank: int, world: int):
        self.start, self.steps, self.batch, self.rank, self.world = start, steps, batch, rank, world
        self.local = batch // world

    def __iter__(self):
        for s in range(self.start, self.steps):
            base = s * self.batch + self.rank * self.local
            yield from range(base, base + self.local)

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * self.local


def make_loader(cfg: TrainConfig, model_cfg: ModelConfig, env: D.DistEnv, start: int):
    root = cfg.data or default_root()
    sim = Simulator(root, "train", sim_config(cfg, model_cfg), seed=cfg.seed)
    local = cfg.batch // env.world
    workers = cfg.resolved_workers()
    kw = {"num_workers": workers, "pin_memory": env.device.startswith("cuda")}
    if workers:
        kw.update(prefetch_factor=4, persistent_workers=False)
    loader = torch.utils.data.DataLoader(StepClips(sim), batch_size=local,
                                         sampler=StepSampler(start, cfg.steps, cfg.batch, env.rank, env.world),
                                         collate_fn=collate_mixtures, drop_last=False, **kw)
    return loader, sim


def make_valid_batches(cfg: TrainConfig, model_cfg: ModelConfig, env: D.DistEnv) -> list[dict]:
    """This rank's shard (clips r, r+W, ...) of the fixed validation set, collated in batches."""
    sim = Simulator(cfg.data or default_root(), "valid", sim_config(cfg, model_cfg), seed=cfg.valid_seed)
    mine = [sim[i] for i in range(env.rank, cfg.valid_clips, env.world)]
    size = max(1, cfg.batch // env.world)
    return [collate_mixtures(mine[k:k + size]) for k in range(0, len(mine), size)]


# --------------------------------------------------------------------------------------- the run
class _StopFlag:
    """First Ctrl-C / SIGTERM: finish the current step, save last.pt, exit; a second one aborts."""

    def __init__(self):
        self.set = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:          # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class RunLog:
    """Appends JSON lines to ``log.jsonl`` (rank 0 only); on resume drops lines past the resumed step."""

    def __init__(self, path: Path, start: int, enabled: bool):
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        keep = []
        if start and path.exists():
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= start:
                        keep.append(line)
                except json.JSONDecodeError:
                    continue
        atomic_write_text(path, "".join(k + "\n" for k in keep))
        self._f = open(path, "a", encoding="utf-8")

    def write(self, rec: dict) -> None:
        if self.enabled:
            self._f.write(to_json(rec, indent=None) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self.enabled:
            self._f.close()


def write_run_config(out: Path, cfg: TrainConfig, model_cfg: ModelConfig, env: D.DistEnv, extra: dict) -> None:
    doc = {"train": cfg.to_dict(), "model": model_cfg.to_dict(), "world_size": env.world,
           "global_batch": cfg.batch, "per_rank_batch": cfg.batch // env.world, "versions": versions(), **extra}
    atomic_write_text(out / "train_config.json", json.dumps(json_safe(doc), indent=2) + "\n")


def train(cfg: TrainConfig, model_cfg: ModelConfig, out: str | os.PathLike, resume: str | os.PathLike | None = None,
          progress: bool = True) -> dict:
    """Run (or continue) a training run into folder ``out``; returns the summary (also summary.json)."""
    env = D.setup(cfg.device)
    try:
        return _train(cfg, model_cfg, Path(out), resume, progress, env)
    finally:
        D.teardown(env)


def _train(cfg, model_cfg, out: Path, resume, progress, env: D.DistEnv) -> dict:
    if cfg.batch % env.world:
        raise PocketVQEError(f"--batch {cfg.batch} is the global batch and must divide evenly over "
                             f"{env.world} processes")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if not resume and (out / "last.pt").exists():
        raise PocketVQEError(f"{out} already holds a run (last.pt): continue it with --resume, or pick a new --out")
    trainer = Trainer(cfg, model_cfg, env)
    if resume:
        trainer.load(read_checkpoint(resume))
    start = trainer.step
    if start >= cfg.steps:
        raise PocketVQEError(f"the checkpoint is at step {start} and --steps is {cfg.steps}: raise --steps to "
                             "train further")
    main = env.is_main
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if main else (lambda *a: None)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_run_config(out, cfg, model_cfg, env, {"resumed_from": str(resume) if resume else None,
                                                    "resumed_at_step": start, "init": trainer.init_info})
    loader, sim = make_loader(cfg, model_cfg, env, start)
    valid = make_valid_batches(cfg, model_cfg, env)
    log = RunLog(out / "log.jsonl", start, main)
    say(f"training {model_cfg.name} ({trainer.n_params / 1e6:.2f} M params) on {env.device}"
        f"{f' x {env.world} processes' if env.distributed else ''}: steps {start} -> {cfg.steps}, "
        f"batch {cfg.batch}, {cfg.clip_seconds:g} s clips, lr {cfg.lr:g}, corpus {sim.manifest.root}, "
        f"scenarios {','.join(cfg.scenarios or served_scenarios(model_cfg))}; writing {out}")
    if trainer.init_info:
        say(f"initialised from {cfg.init}: {trainer.init_info['copied']} tensors copied, "
            f"{trainer.init_info['partial']} partly, {len(trainer.init_info['skipped'])} left random")

    bar = tqdm(total=cfg.steps, initial=start, desc=model_cfg.name, unit="step", dynamic_ncols=True,
               disable=not (main and progress), file=sys.stderr, mininterval=1.0)
    clips_seen, t_train, t0, stopped, skipped, bad_run, first_clip = 0, 0.0, time.time(), False, 0, 0, None
    local = cfg.batch // env.world

    def checkpoint(final: bool = False):
        p = trainer.save(out / f"step-{trainer.step:06d}.pt")
        trainer.save(out / "last.pt")
        if final:
            say(f"saved {p} and {out / 'last.pt'}")

    def run_valid():
        v = trainer.validate(valid)
        log.write(json_safe({"kind": "valid", **v}))
        bar.set_postfix(loss=f"{trainer.loss_ema:.4f}", valid=f"{v['valid_loss']:.4f}",
                        sisdri=f"{v['si_sdri']:+.1f}dB", refresh=False)
        return v

    with _StopFlag() as flag:
        batches = iter(loader)
        while trainer.step < cfg.steps:
            t_step = time.time()
            batch = next(batches)
            if first_clip is None:
                first_clip = int(batch["meta"][0]["index"]) + int(batch["meta"][0]["epoch"]) * len(sim)
            clips_seen += len(batch["scenario"])
            rec = trainer.train_step(batch, stop=flag.set)
            dt = time.time() - t_step
            t_train += dt
            skipped += rec["skipped"]
            bad_run = bad_run + 1 if (rec["skipped"] or not math.isfinite(rec["loss"])) else 0
            log.write(json_safe({"kind": "train", "step": trainer.step, "loss": rec["loss"], "lr": rec["lr"],
                              "grad_norm": rec["grad_norm"], "skipped": rec["skipped"], "sec": round(dt, 4)}))
            if bad_run >= 10:
                raise PocketVQEError(f"loss or gradients not finite for {bad_run} steps in a row (step "
                                     f"{trainer.step}): lower --lr or check the data")
            bar.update(1)
            if trainer.loss_ema is not None:
                bar.set_postfix(loss=f"{trainer.loss_ema:.4f}", lr=f"{rec['lr']:.2e}", refresh=False)
            last = trainer.step == cfg.steps
            if rec["stop"]:
                stopped = True
                say(f"\nstopping at step {trainer.step} (signal): saving last.pt; continue with --resume")
                checkpoint()
                break
            if (cfg.valid_every and trainer.step % cfg.valid_every == 0) or last:
                run_valid()
            if (cfg.ckpt_every and trainer.step % cfg.ckpt_every == 0) or last:
                checkpoint(final=last)
    bar.close()
    log.close()
    D.broadcast_buffers(env, trainer.enh)
    divergence = D.param_divergence(env, trainer.enh, buffers=True)
    ranks = D.all_gather_objects(env, {"rank": env.rank, "device": env.device, "clips": clips_seen,
                                       "first_clip": first_clip,
                                       "clips_per_step": local, "train_seconds": round(t_train, 2)})
    steps_done = trainer.step - start
    summary = json_safe({
        "model": model_cfg.name, "steps": trainer.step, "steps_this_run": steps_done, "stopped_early": stopped,
        "world_size": env.world, "batch": cfg.batch, "ranks": ranks, "train_loss_ema": trainer.loss_ema,
        "valid": trainer.last_valid, "skipped_steps": skipped, "ddp_param_max_diff": divergence,
        "seconds": round(time.time() - t0, 2), "steps_per_second": steps_done / t_train if t_train else None,
        "last": str(out / "last.pt")})
    if main:
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        v = trainer.last_valid or {}
        say(f"done: step {trainer.step}, train loss {trainer.loss_ema:.4f}, "
            f"valid loss {v.get('valid_loss', math.nan):.4f} "
            f"(unprocessed input {v.get('valid_loss_input', math.nan):.4f}), "
            f"SI-SDR {v.get('si_sdr', math.nan):.2f} dB (input {v.get('si_sdr_input', math.nan):.2f} dB), "
            f"{summary['steps_per_second'] or 0:.3f} steps/s")
    if divergence > 1e-6:
        raise PocketVQEError(f"DDP replicas diverged (max parameter difference {divergence:.3g}); this is a bug")
    return summary
