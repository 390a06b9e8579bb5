"""Model-agnostic evaluation: run *processors* over the fixed evaluation set, score every output with
:func:`pocketvqe.metrics.get_metrics`, aggregate per scenario, render markdown and JSON.

A processor is anything with a ``name`` and ``process(mixture) -> np.ndarray`` that returns the
enhanced microphone signal at the mixture's rate (16 kHz), time-aligned and exactly as long as
``mixture.mic``. Implementations here: :class:`ModelProcessor` (a ``.pt`` checkpoint, ``.pt2`` or ``.pte``),
:class:`PeerProcessor` (DeepFilterNet3, RNNoise, WebRTC NS, Speex NS, Speex AEC from
:mod:`pocketvqe.peers`) and :class:`IdentityProcessor` (returns the input; scores equal the
``input_*`` baseline). :func:`load_processor` turns a file or a name into a processor; model files
load through :func:`pocketvqe.inference.load_model`, the one loader of every model format.

Optional processor attributes, read with ``getattr``: ``personalized`` (bool: it reads
``mixture.enroll``; turns on personalized DNSMOS for everyone in the run), ``scenarios`` (tuple of
scenarios it applies to, None = all; echo cancellers only run on echo clips), ``last_compute_s``
(seconds of pure processing in the last ``process`` call, excluding per-clip setup and resampling;
used for the real-time factor when present), ``describe()`` (a JSON-able dict for the report).

The unprocessed input is the baseline: every ``get_metrics`` row carries it as ``input_*`` keys,
reported under the processor name ``"input"``.

>>> clips = load_clips("~/.cache/pocketvqe/corpus", "test", n_per_scenario=2)     # doctest: +SKIP
>>> report = evaluate(clips, [load_processor("model.pt", name="model")])         # doctest: +SKIP
>>> print(markdown_table(report))                                              # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol, Sequence, runtime_checkable

import numpy as np
from scipy.signal import correlate
from tqdm.auto import tqdm

from .data import SCENARIOS, SimConfig, Simulator, default_root, load_manifest, make_eval_set
from .errors import PocketVQEError
from .export import INT8_DELTA_TARGETS
from .fileio import atomic_write_text
from .inference import LOADERS, enhance_arrays, load_model
from .metrics import GROUPS, get_metrics, summarize
from .peers import PEERS, Peer, get_peer

SR = 16000
BASELINE = "input"
OVERALL = "overall"
FORMAT = "pocketvqe-eval-1"
# scenarios with a far-end signal: echo cancellers apply, AECMOS is scored (near-end single talk
# included: the canceller must leave the talker alone when the far end is silent)
AEC_SCENARIOS = ("echo_fe_st", "echo_ne_st", "double_talk")
DEFAULT_SEED = 20240601  # make_eval_set's default


# ---------------------------------------------------------------------------------------------
# processors

@runtime_checkable
class Processor(Protocol):
    """Something that enhances a :class:`~pocketvqe.data.Mixture`."""

    name: str

    def process(self, mixture) -> np.ndarray:
        """Enhanced ``mixture.mic``: float, mono, at ``mixture.sample_rate``, aligned, same length."""


class IdentityProcessor:
    """Returns the microphone signal unchanged (its scores equal the ``input_*`` baseline)."""

    personalized = False
    scenarios = None

    def __init__(self, name: str = "identity"):
        self.name = name
        self.last_compute_s: float | None = None

    def process(self, mixture) -> np.ndarray:
        t0 = time.perf_counter()
        y = np.array(mixture.mic, np.float32, copy=True)
        self.last_compute_s = time.perf_counter() - t0
        return y

    def describe(self) -> dict:
        return {"kind": "identity"}


class PeerProcessor:
    """A published enhancer from :mod:`pocketvqe.peers` (output already delay-compensated there).

    Echo cancellers get ``mixture.far`` and apply to :data:`AEC_SCENARIOS` only; noise suppressors
    run on every clip (on echo clips they just cannot cancel the echo). ``last_compute_s`` is the
    peer's own processing at its native rate, as :func:`pocketvqe.peers.real_time_factor` measures
    it: per-clip state creation (DeepFilterNet3 loads its model there) and resampling are excluded.
    """

    personalized = False

    def __init__(self, peer, name: str | None = None, **options):

        self.peer = get_peer(peer, **options) if isinstance(peer, str) else peer
        if not isinstance(self.peer, Peer):
            raise PocketVQEError(f"{peer!r} is not a pocketvqe.peers.Peer: give a peer name or instance")
        self.name = name or self.peer.name
        self.scenarios = AEC_SCENARIOS if self.peer.handles_echo else None
        self.last_compute_s: float | None = None

    def process(self, mixture) -> np.ndarray:
        p = self.peer
        far = mixture.far if p.handles_echo else None
        # Peer.process split into its steps (as peers.real_time_factor does) to time only the run
        x, f, n = p._prepare(mixture.mic, mixture.sample_rate, far)
        state = p._open()
        t0 = time.perf_counter()
        y = p._run(state, x, f)
        self.last_compute_s = time.perf_counter() - t0
        return p._finish(y, n, mixture.sample_rate, len(mixture.mic))

    def describe(self) -> dict:
        p = self.peer
        return {"kind": "peer", "peer": p.name, "sample_rate": p.sample_rate, "handles_echo": p.handles_echo,
                "delay_removed": p.delay, "class": type(p).__name__}


class ModelProcessor:
    """A model file run through :func:`pocketvqe.inference.load_model` and
    :func:`pocketvqe.inference.enhance_arrays`, the same path as `pocketvqe enhance`: a float checkpoint
    (``.pt``), a quantized model (``.pt2``, the PyTorch int8 reference) or an ExecuTorch program
    (``.pte``, run in-process). Personalized models enroll from ``mixture.enroll``; models at another
    rate see resampled input and their output is resampled back."""

    scenarios = None

    def __init__(self, path: str | os.PathLike, name: str | None = None):
        self.path = Path(path)
        self.model = load_model(self.path)
        self.cfg = self.model.cfg
        self.name = name or self.path.stem
        self.personalized = bool(self.cfg.personalized)
        self.last_compute_s: float | None = None

    def process(self, mixture) -> np.ndarray:
        if self.personalized and (mixture.enroll is None or len(mixture.enroll) < self.cfg.n_fft):
            raise PocketVQEError(f"clip {_clip_name(mixture)} has no enrollment audio but {self.name} is a "
                                 "personalized model: rebuild the evaluation set (it stores enroll.wav)")
        t0 = time.perf_counter()
        y = enhance_arrays(self.model, mixture.mic, mixture.sample_rate,
                           far=mixture.far if self.cfg.has_far else None, far_sr=mixture.sample_rate,
                           enroll=mixture.enroll if self.personalized else None, enroll_sr=mixture.sample_rate)
        self.last_compute_s = time.perf_counter() - t0
        return y

    def describe(self) -> dict:
        kind = {".pt": "checkpoint", ".pt2": "quantized", ".pte": "program"}[self.path.suffix]
        meta = getattr(self.model, "meta", None) or getattr(self.model, "metadata", None) or {}
        out = {"kind": kind, "path": str(self.path), "config": self.cfg.name, "sample_rate": self.cfg.sample_rate,
               "personalized": self.personalized, "has_far": self.cfg.has_far}
        if kind == "quantized":
            out.update(quant=meta.get("quant"), calibration=meta.get("calibration"))
        elif kind == "program":
            out.update(precision=meta.get("precision"), recipe=meta.get("recipe"))
        return out


MODEL_SUFFIXES = tuple(LOADERS)          # what inference.load_model runs: .pt, .pt2, .pte
IDENTITY_NAMES = ("identity", "input")


def load_processor(spec: str | os.PathLike, name: str | None = None) -> Processor:
    """A processor from a model file (:class:`ModelProcessor`), a peer name
    (``speex_ns``, ``deepfilternet3``, ...) or ``identity``; ``name`` overrides its label."""

    text = os.fspath(spec)
    if text in PEERS and not Path(text).exists():
        return PeerProcessor(text, name=name)
    if text in IDENTITY_NAMES and not Path(text).exists():
        return IdentityProcessor(name or "identity")
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        kinds = ", ".join(MODEL_SUFFIXES)
        what = f"{suffix!r} files are not supported" if suffix else "it has no file suffix and is no known name"
        raise PocketVQEError(f"cannot evaluate {text!r}: {what}; give a model file ({kinds}), a peer name "
                             f"({', '.join(PEERS)}) or 'identity'")
    if not path.exists():
        raise PocketVQEError(f"model file {path} does not exist: check the path (or create a checkpoint with "
                             "`pocketvqe init --config NAME --out x.pt`)")
    return ModelProcessor(path, name=name)


# ---------------------------------------------------------------------------------------------
# the evaluation set

def eval_set_dir(root: str | os.PathLike, split: str, n_per_scenario: int, seed: int = DEFAULT_SEED) -> Path:
    """Where :func:`load_clips` caches a set: ``<corpus>/eval_sets/<split>-n<N>-seed<S>``."""
    return Path(root).expanduser() / "eval_sets" / f"{split}-n{n_per_scenario}-seed{seed}"


def eval_sim_config():
    """The simulator settings of every evaluation set: all six scenarios, 6 s clips."""
    return SimConfig(personalized=True)


def load_clips(root: str | os.PathLike | None = None, split: str = "test", n_per_scenario: int = 8,
               seed: int = DEFAULT_SEED, scenarios: Sequence[str] | None = None, progress: bool = True,
               cache: bool = True) -> list:
    """The fixed evaluation set of ``split`` (``n_per_scenario`` clips of each of the six scenarios),
    built once with :func:`~pocketvqe.data.make_eval_set` and cached under the corpus root.

    Each clip gets ``parts`` (its echo / interferer components, which metrics need and the saved
    set does not store), regenerated bit-exactly from the simulator's seed. ``scenarios`` keeps
    only those scenarios (the set itself always holds all of them).
    """

    if split not in ("train", "valid", "test"):
        raise PocketVQEError(f"--set {split!r}: choose test or valid (or train)")
    if scenarios is not None:
        unknown = [s for s in scenarios if s not in SCENARIOS]
        if unknown:
            raise PocketVQEError(f"unknown scenario(s) {unknown}: choose from {list(SCENARIOS)}")
    root = Path(root).expanduser() if root else default_root()
    manifest = load_manifest(root)
    config = eval_sim_config()
    out_dir = eval_set_dir(root, split, n_per_scenario, seed) if cache else None
    try:
        clips = make_eval_set(manifest, split=split, n_per_scenario=n_per_scenario, seed=seed, config=config,
                              out_dir=out_dir, progress=progress)
    except OSError as exc:  # read-only corpus: build in memory
        warnings.warn(f"cannot cache the evaluation set in {out_dir} ({exc}); building it in memory", stacklevel=2)
        clips = make_eval_set(manifest, split=split, n_per_scenario=n_per_scenario, seed=seed, config=config,
                              progress=progress)
    for k, c in enumerate(clips):
        c.meta.setdefault("name", f"{k:04d}_{c.scenario}")
    if scenarios is not None:
        clips = [c for c in clips if c.scenario in scenarios]
    attach_parts(clips, manifest, config)
    return clips


def attach_parts(clips: Iterable, corpus, config=None) -> None:
    """Fill ``clip.parts`` (speech / echo / interferer / noise) for clips that need echo or
    interferer parts, by re-running the seeded simulator (checked against the stored mic)."""

    clips = [c for c in clips if c.parts is None and c.scenario in ("echo_fe_st", "double_talk", "interferer")]
    if not clips:
        return
    config = config or eval_sim_config()
    sims: dict = {}
    for c in clips:
        key = (c.meta["split"], c.meta["seed"], c.meta.get("epoch", 0))
        if key not in sims:
            sims[key] = Simulator(corpus, key[0], config, seed=key[1], length=10 ** 9, keep_parts=True)
            sims[key].set_epoch(key[2])
        again = sims[key].make(int(c.meta["index"]), scenario=c.scenario)
        if again.mic.shape == c.mic.shape and np.array_equal(again.mic, c.mic):
            c.parts = again.parts
        else:
            warnings.warn(f"clip {_clip_name(c)}: cannot regenerate its echo/interferer parts (the corpus changed "
                          "since the set was made); ERLE / interferer suppression will be missing", stacklevel=2)


# ---------------------------------------------------------------------------------------------
# scoring

def metric_groups(mixture, personalized: bool = False, which: Iterable[str] | None = None) -> list[str]:
    """The metric groups that apply to this clip, optionally restricted to ``which``."""
    if which is not None:
        which = [which] if isinstance(which, str) else list(which)
        unknown = [g for g in which if g not in GROUPS]
        if unknown:
            raise PocketVQEError(f"unknown metric group(s) {unknown}: choose from {', '.join(GROUPS)}")
    inputs = metric_inputs(mixture, personalized)
    groups = []
    for g in GROUPS:
        if g == "aecmos" and inputs["far"] is None:
            continue
        if g == "erle" and inputs["echo"] is None:
            continue
        if g == "interferer" and inputs["interferer"] is None:
            continue
        if g == "pdnsmos" and not (personalized or inputs["interferer"] is not None):
            continue
        if which is None or g in which:
            groups.append(g)
    return groups


def metric_inputs(mixture, personalized: bool = False) -> dict:
    """The optional :func:`get_metrics` inputs of a clip: far (echo scenarios), echo and interferer
    (from ``mixture.parts``), enroll (personalized evaluations)."""
    parts = mixture.parts or {}
    return {"far": mixture.far if mixture.scenario in AEC_SCENARIOS else None,
            "echo": parts.get("echo"), "interferer": parts.get("interferer"),
            "enroll": mixture.enroll if personalized else None}


def score(mixture, estimate: np.ndarray, personalized: bool = False,
          which: Iterable[str] | None = None) -> dict[str, float]:
    """``get_metrics`` of one clip with the right extra signals for its scenario (keys and ``input_*`` keys)."""
    groups = metric_groups(mixture, personalized, which)
    if not groups:
        return {}
    return get_metrics(mixture.mic, mixture.target, estimate, sr=mixture.sample_rate,
                       which=groups, **metric_inputs(mixture, personalized))


@dataclass
class ClipResult:
    """One processor on one clip."""
    clip: str
    scenario: str
    processor: str
    metrics: dict
    audio_s: float
    wall_s: float
    compute_s: float
    lag_ms: float | None = None

    def to_dict(self) -> dict:
        return {"clip": self.clip, "scenario": self.scenario, "processor": self.processor,
                "audio_s": self.audio_s, "wall_s": self.wall_s, "compute_s": self.compute_s,
                "rtf": self.compute_s / self.audio_s, "lag_ms": self.lag_ms, "metrics": self.metrics}


@dataclass
class Evaluation:
    """Every clip result plus what the run was."""
    results: list[ClipResult]
    processors: dict[str, dict]
    clips: list[dict]
    which: list[str] | None
    personalized: bool
    skipped: dict[str, str] = field(default_factory=dict)


def applies(processor, scenario: str) -> bool:
    scen = getattr(processor, "scenarios", None)
    return scen is None or scenario in scen


def run_processors(clips: Sequence, processors: Sequence, which: Iterable[str] | None = None,
                   personalized: bool | None = None, progress: bool = True, warmup: bool = True) -> Evaluation:
    """Run each processor on each clip it applies to, timing it, and score the output.

    ``personalized`` (default: any processor is) adds personalized DNSMOS on every clip. A clip
    that no processor applies to is still scored for the baseline (through the identity).
    """

    names = [p.name for p in processors]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup or BASELINE in names:
        raise PocketVQEError(f"processor names must be unique and not {BASELINE!r} (got {names}): "
                             "rename them (e.g. different checkpoint file names)")
    for p in processors:
        if not isinstance(p, Processor):
            raise PocketVQEError(f"{p!r} is not a processor (needs .name and .process(mixture))")
    which = list(which) if which is not None else None
    if personalized is None:
        personalized = any(getattr(p, "personalized", False) for p in processors)
    if warmup and clips:
        _warm_up(processors, clips)
    jobs = [(c, p) for c in clips for p in processors if applies(p, c.scenario)]
    identity = IdentityProcessor(BASELINE)
    jobs += [(c, identity) for c in clips if not any(applies(p, c.scenario) for p in processors)]
    results = []
    bar = tqdm(total=len(jobs), desc="evaluating", unit="run", disable=not progress, leave=False)
    try:
        for c, p in jobs:
            bar.set_postfix_str(f"{_clip_name(c)} {p.name}", refresh=False)
            y, wall, compute = _run_one(p, c)
            m = score(c, y, personalized, which)
            if p is identity:  # baseline only: keep the input_ keys
                m = {k: v for k, v in m.items() if k.startswith("input_")}
            results.append(ClipResult(_clip_name(c), c.scenario, p.name, m, len(c.mic) / c.sample_rate, wall, compute,
                                      None if p is identity else alignment_lag_ms(y, c.mic, c.sample_rate)))
            bar.update()
    finally:
        bar.close()
    info = {p.name: (p.describe() if hasattr(p, "describe") else {"kind": type(p).__name__}) for p in processors}
    clip_info = [{"clip": _clip_name(c), "scenario": c.scenario, "seconds": len(c.mic) / c.sample_rate,
                  **{k: c.meta.get(k) for k in ("snr_db", "ser_db", "sir_db", "delay_ms", "rt60", "speaker",
                                                  "clipped", "nonlinearity")}} for c in clips]
    return Evaluation(results, info, clip_info, which, personalized)


def _run_one(p, clip) -> tuple[np.ndarray, float, float]:
    if hasattr(p, "last_compute_s"):
        p.last_compute_s = None
    t0 = time.perf_counter()
    try:
        y = p.process(clip)
    except PocketVQEError:
        raise
    except Exception as exc:
        raise PocketVQEError(f"{p.name} failed on clip {_clip_name(clip)} ({type(exc).__name__}: {exc}): "
                             "check that it runs on this machine (pocketvqe enhance / peers status)") from exc
    wall = time.perf_counter() - t0
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(clip.mic):
        raise PocketVQEError(f"{p.name} returned shape {y.shape} on clip {_clip_name(clip)} but the mic has "
                             f"{len(clip.mic)} samples: a processor must return aligned mono audio of the same length")
    if not np.all(np.isfinite(y)):
        raise PocketVQEError(f"{p.name} produced NaN/Inf on clip {_clip_name(clip)}: the model is broken or "
                             "diverged; check the checkpoint (pocketvqe enhance on one file)")
    compute = getattr(p, "last_compute_s", None)
    return y.astype(np.float32, copy=False), wall, float(wall if compute is None else compute)


def _warm_up(processors, clips) -> None:
    """One untimed second of audio through each processor (lazy loads, first-call allocations)."""
    for p in processors:
        c = next((c for c in clips if applies(p, c.scenario)), None)
        if c is None:
            continue
        n = min(len(c.mic), c.sample_rate)
        short = dataclasses.replace(c, mic=c.mic[:n], far=c.far[:n], target=c.target[:n], parts=None)
        _run_one(p, short)


def alignment_lag_ms(y: np.ndarray, x: np.ndarray, sr: int = SR, max_ms: float = 50.0) -> float | None:
    """Lag of ``y`` behind ``x`` (ms) at the peak of their cross-correlation within +-``max_ms``: a check
    that a processor's output is delay-compensated (0 for an aligned enhancer); None for silence."""

    if not np.any(y) or not np.any(x):
        return None
    c = correlate(np.asarray(y, np.float64), np.asarray(x, np.float64), mode="full", method="fft")
    mid, m = len(x) - 1, min(int(max_ms * sr / 1000), len(x) - 1)
    return (int(np.argmax(np.abs(c[mid - m:mid + m + 1]))) - m) * 1000.0 / sr


def _clip_name(clip) -> str:
    return str(clip.meta.get("name") or f"{clip.meta.get('index', '?')}_{clip.scenario}")


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    return np.pad(y, (0, max(0, n - len(y))))[:n].astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# aggregation

def aggregate(results: Sequence[ClipResult], order: Sequence[str] | None = None) -> dict[str, dict[str, dict]]:
    """Per scenario (in clip order) and ``overall``: ``{scenario: {processor: summary}}``.

    The baseline ``input`` summary comes from the ``input_*`` keys (one row per clip); each
    processor's summary holds its un-prefixed metrics, ``n_clips``, ``rtf`` (compute seconds /
    audio seconds), ``rtf_wall`` (with resampling and per-clip setup) and ``lag_ms`` (median
    output-vs-mic cross-correlation lag: about 0 when the output is aligned). Means ignore NaN
    (:func:`pocketvqe.metrics.summarize`).
    """
    scenarios = list(dict.fromkeys(r.scenario for r in results))
    names = list(order) if order is not None else list(dict.fromkeys(r.processor for r in results
                                                                        if r.processor != BASELINE))
    out: dict[str, dict[str, dict]] = {}
    for scen in scenarios + [OVERALL]:
        rows = [r for r in results if scen == OVERALL or r.scenario == scen]
        block: dict[str, dict] = {}
        baseline: dict[str, dict] = {}
        for r in rows:
            baseline.setdefault(r.clip, {k[len("input_"):]: v for k, v in r.metrics.items() if k.startswith("input_")})
        block[BASELINE] = {"n_clips": len(baseline), **summarize(baseline.values())}
        for name in names:
            mine = [r for r in rows if r.processor == name]
            if not mine:
                continue
            audio = sum(r.audio_s for r in mine)
            block[name] = {"n_clips": len(mine),
                           **summarize({k: v for k, v in r.metrics.items() if not k.startswith("input_")}
                                       for r in mine),
                           "rtf": sum(r.compute_s for r in mine) / audio,
                           "rtf_wall": sum(r.wall_s for r in mine) / audio,
                           "lag_ms": _median([r.lag_ms for r in mine if r.lag_ms is not None])}
        out[scen] = block
    return out


def report(ev: Evaluation, command: str, eval_set: dict | None = None, extra: dict | None = None) -> dict:
    """The JSON document of an evaluation (NaN written as null)."""
    torch = sys.modules.get("torch")
    names = list(ev.processors)
    return _jsonable({
        "format": FORMAT, "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "eval_set": eval_set or {}, "metric_groups": ev.which or list(GROUPS), "personalized": ev.personalized,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "rtf_definition": "rtf: processing seconds / audio seconds, per clip summed (model: Enhancer.enhance; "
                          "peers: their own run at their native rate, without per-clip setup or resampling); "
                          "rtf_wall: the whole process() call",
        "processors": ev.processors, "skipped": ev.skipped,
        "scenarios": aggregate(ev.results, names),
        "clips": ev.clips,
        "results": [r.to_dict() for r in ev.results],
        **(extra or {}),
    })


def evaluate(clips: Sequence, processors: Sequence, which: Iterable[str] | None = None,
             personalized: bool | None = None, progress: bool = True, command: str = "evaluate",
             eval_set: dict | None = None) -> dict:
    """:func:`run_processors` + :func:`report` in one call."""
    return report(run_processors(clips, processors, which, personalized, progress), command, eval_set)


# ---------------------------------------------------------------------------------------------
# markdown

# (key, header, decimals); a column shows when any row has a number for it
COLUMNS = [("pesq_wb", "PESQ", 2), ("stoi", "STOI", 3), ("estoi", "ESTOI", 3), ("si_sdr", "SI-SDR", 1),
           ("dnsmos_sig", "SIG", 2), ("dnsmos_bak", "BAK", 2), ("dnsmos_ovrl", "OVRL", 2), ("dnsmos_p808", "P808", 2),
           ("pdnsmos_sig", "pSIG", 2), ("pdnsmos_bak", "pBAK", 2), ("pdnsmos_ovrl", "pOVRL", 2),
           ("aecmos_echo", "AEC echo", 2), ("aecmos_deg", "AEC deg", 2), ("erle_db", "ERLE dB", 1),
           ("interferer_suppression_db", "ITS dB", 1), ("tsos", "TSOS", 3), ("rtf", "RTF", 4)]
LEGEND = ("PESQ wide band; STOI/ESTOI; SI-SDR dB; SIG/BAK/OVRL DNSMOS P.835, P808 DNSMOS P.808; pSIG/pBAK/pOVRL "
          "personalized DNSMOS; AEC echo/deg AECMOS; ERLE dB (far-end single talk); ITS interfering-talker "
          "suppression dB; TSOS share of target frames over-suppressed (lower is better; all others higher); "
          "RTF processing time / audio time; n clips scored; - not defined or not run.")


def markdown_table(rep: dict, processors: Sequence[str] | None = None, legend: bool = True) -> str:
    """Rows scenario x system (``input`` first), columns the metrics present (from a :func:`report`)."""
    scen = rep["scenarios"]
    names = [BASELINE] + list(processors if processors is not None else rep.get("processors", {}))
    cols = [(k, h, d) for k, h, d in COLUMNS
            if any(_finite(block.get(n, {}).get(k)) for block in scen.values() for n in names)]
    lines = ["| scenario | system | n | " + " | ".join(h for _, h, _ in cols) + " |",
             "|---|---|---:|" + "---:|" * len(cols)]
    for s, block in scen.items():
        for n in names:
            row = block.get(n)
            if row is None:
                if n == BASELINE:
                    continue
                lines.append(f"| {s} | {n} | 0 | " + " | ".join("-" for _ in cols) + " |")
                continue
            cells = [f"{row[k]:.{d}f}" if _finite(row.get(k)) else "-" for k, _, d in cols]
            lines.append(f"| {s} | {n} | {row.get('n_clips', '-')} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if legend:
        text += "\n" + LEGEND + "\n"
    return text


def deltas(rep: dict, reference: str, targets: dict | None = None) -> dict[str, dict[str, dict]]:
    """Per scenario, each system's median judges minus ``reference``'s on the same clips (from a
    :func:`report`): {scenario: {system: {metric: {"delta", "target", "meets"}}}}. ``targets``: metric ->
    lower bound on the delta, or (low, high) (default: :data:`pocketvqe.export.INT8_DELTA_TARGETS`, what an
    int8 program may lose against its float model); metrics without a target are reported with None.

    >>> rep = compare(...); d = deltas(rep, "dvqe-s16")           # doctest: +SKIP
    >>> d["double_talk"]["dvqe-s16-int8"]["aecmos_deg"]         # doctest: +SKIP
    {'delta': -0.02, 'target': -0.1, 'meets': True}
    """
    targets = INT8_DELTA_TARGETS if targets is None else targets
    check_reference(reference, list(rep.get("processors", {})))
    names = [n for n in rep["processors"] if n != reference]
    out: dict[str, dict[str, dict]] = {}
    for s, block in rep["scenarios"].items():
        ref = block.get(reference) or {}
        for n in names:
            row = block.get(n) or {}
            cells = {}
            for k, _, _ in COLUMNS:
                if k == "rtf" or not (_finite(ref.get(k)) and _finite(row.get(k))):
                    continue
                d, t = row[k] - ref[k], targets.get(k)
                if k == "tsos":                       # lower is better: a rise is a loss
                    d = -d
                lo, hi = t if isinstance(t, (tuple, list)) else (t, math.inf)
                cells[k] = {"delta": d, "target": t, "meets": None if t is None else bool(lo <= d <= hi)}
            out.setdefault(s, {})[n] = cells
    return out


def check_reference(reference: str, names: Sequence[str]) -> None:
    """Refuse a ``--delta-vs`` name that is not one of the systems ``names`` scored (or about to be)."""
    if reference not in names:
        raise PocketVQEError(f"--delta-vs {reference!r} is not one of the systems ({', '.join(names) or 'none'}): "
                             "name a --model by its file stem")


def delta_table(d: dict[str, dict[str, dict]], reference: str) -> str:
    """:func:`deltas` ``d`` (against ``reference``) as markdown: one row per scenario and system, each cell
    the delta (a ``!`` marks a missed target), then the list of misses."""
    keys = [(k, h, dec) for k, h, dec in COLUMNS if any(k in cells for block in d.values() for cells in block.values())]
    lines = [f"| scenario | system - {reference} | " + " | ".join(f"d{h}" for _, h, _ in keys) + " |",
             "|---|---|" + "---:|" * len(keys)]
    misses = []
    for s, block in d.items():
        for n, cells in block.items():
            row = []
            for k, h, dec in keys:
                c = cells.get(k)
                if c is None:
                    row.append("-")
                    continue
                row.append(f"{c['delta']:+.{dec}f}" + (" !" if c["meets"] is False else ""))
                if c["meets"] is False:
                    misses.append(f"{s} {n} d{h} {c['delta']:+.{dec}f} (target {c['target']})")
            lines.append(f"| {s} | {n} | " + " | ".join(row) + " |")
    text = "\n".join(lines) + "\n"
    text += ("\nmissed targets: " + "; ".join(misses) if misses else "\nevery delta meets its target") + \
        " (TSOS: decrease shown, lower is better)\n"
    return text


def write_outputs(rep: dict, json_path: str | os.PathLike | None = None, md_path: str | os.PathLike | None = None,
                  md: str | None = None) -> None:
    """Write the report JSON and/or the markdown, atomically."""
    if json_path:
        atomic_write_text(json_path, json.dumps(rep, indent=1, allow_nan=False) + "\n")
    if md_path:
        atomic_write_text(md_path, md if md is not None else markdown_table(rep))


def _median(values: list) -> float:
    return float(np.median(values)) if values else math.nan


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return str(x)
