"""On-the-fly, seeded training mixtures for every scenario the model serves.

Scenarios: ``noise`` (dry speech + noise), ``reverb`` (room + noise), ``echo_fe_st`` (far-end
single talk: echo + noise, target silent), ``echo_ne_st`` (near-end single talk: far-end silent),
``double_talk`` (near speech + echo + noise) and, for personalized models, ``interferer`` (a
second talker at SIR 0-20 dB that must be removed). Every clip comes with an enrollment
utterance of the target speaker (other utterances, 5-10 s, half of them noisy).

``Simulator[i]`` is a pure function of (seed, epoch, i): the same index gives the same clip in
any process, so it works with a torch DataLoader and any number of workers.

>>> sim = Simulator("~/.cache/pocketvqe/corpus", "train", SimConfig(clip_seconds=4.0), seed=0)  # doctest: +SKIP
>>> m = sim[0]                                                                                 # doctest: +SKIP
>>> m.mic.shape, m.scenario, m.meta["snr_db"]                                                  # doctest: +SKIP
((64000,), 'double_talk', 7.3)
>>> loader = torch.utils.data.DataLoader(sim, batch_size=8, collate_fn=collate_mixtures)     # doctest: +SKIP
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field, fields

import numpy as np
import soundfile as sf
import torch

from ..audio import resample
from ..errors import PocketVQEError
from .manifest import SPLITS, CorpusEntry, Manifest, load_manifest
from .mixing import convolve, fit, level_db, loudspeaker, rms, scale_to_ratio, set_level
from .rooms import early_part

SCENARIOS = ("noise", "reverb", "echo_fe_st", "echo_ne_st", "double_talk", "interferer")
ECHO_SCENARIOS = ("echo_fe_st", "double_talk")
FORMANT_TTS = ("espeak-ng", "flite", "festival")


def _range(name, v, lo=-np.inf, hi=np.inf):
    if len(v) != 2 or not (lo <= v[0] <= v[1] <= hi):
        raise PocketVQEError(f"SimConfig.{name}={v}: give (low, high) with {lo} <= low <= high <= {hi}")


@dataclass(frozen=True)
class SimConfig:
    """What the simulator draws. Ranges are (low, high), drawn uniformly; levels in dBFS.

    p_*: relative scenario weights (normalized; 0 turns a scenario off). With ``personalized``,
    a fraction ``p_interferer`` of clips is the ``interferer`` scenario and the rest follow the weights.

    >>> SimConfig(p_echo_fe_st=0, p_echo_ne_st=0, p_double_talk=0).scenario_probs()["noise"]
    0.5
    """

    sample_rate: int = 16000
    clip_seconds: float = 6.0
    p_noise: float = 0.25
    p_reverb: float = 0.25
    p_echo_fe_st: float = 0.15
    p_echo_ne_st: float = 0.10
    p_double_talk: float = 0.25
    personalized: bool = False
    p_interferer: float = 0.3
    snr_db: tuple[float, float] = (-5.0, 30.0)
    ser_db: tuple[float, float] = (-10.0, 20.0)
    sir_db: tuple[float, float] = (0.0, 20.0)
    delay_ms: tuple[float, float] = (0.0, 500.0)
    rt60_s: tuple[float, float] = (0.1, 1.0)
    p_reverb_near: float = 0.5          # reverberant near-end speech in echo_ne_st / double_talk / interferer
    p_nonlinear: float = 0.6            # loudspeaker saturation on the echo path
    p_second_noise: float = 0.2
    enroll_seconds: tuple[float, float] = (5.0, 10.0)
    p_enroll_noisy: float = 0.5
    enroll_snr_db: tuple[float, float] = (0.0, 25.0)
    level_dbfs: tuple[float, float] = (-35.0, -15.0)
    far_level_dbfs: tuple[float, float] = (-35.0, -15.0)
    p_clip: float = 0.05                # hard-clipped microphone (the target stays unclipped)
    p_tts_talker: float = 0.25          # share of talkers from formant/diphone TTS (espeak-ng, flite, festival)

    def __post_init__(self):
        for f in fields(self):          # ranges given as lists (from JSON/YAML) become tuples
            if isinstance(getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))
        if self.sample_rate != 16000:
            raise PocketVQEError(f"SimConfig.sample_rate={self.sample_rate}: the corpus is 16 kHz; resample the "
                                 "model input instead (pocketvqe.audio.resample)")
        if not self.clip_seconds >= 1.0:
            raise PocketVQEError(f"SimConfig.clip_seconds={self.clip_seconds}: give at least 1 s")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= v <= 1.0:
                raise PocketVQEError(f"SimConfig.{f.name}={v}: a probability/weight must lie in [0, 1]")
        if sum(self._weights().values()) <= 0:
            raise PocketVQEError("SimConfig: all scenario weights are 0: turn at least one scenario on")
        for name in ("snr_db", "ser_db", "sir_db", "level_dbfs", "far_level_dbfs", "enroll_snr_db"):
            _range(name, getattr(self, name))
        _range("delay_ms", self.delay_ms, 0.0, 1000 * self.clip_seconds / 2)
        _range("rt60_s", self.rt60_s, 0.0, 3.0)
        _range("enroll_seconds", self.enroll_seconds, 0.5, 60.0)
        if self.level_dbfs[1] > 0 or self.far_level_dbfs[1] > 0:
            raise PocketVQEError("SimConfig: levels are dBFS and must be <= 0")

    def _weights(self) -> dict[str, float]:
        return {"noise": self.p_noise, "reverb": self.p_reverb, "echo_fe_st": self.p_echo_fe_st,
                "echo_ne_st": self.p_echo_ne_st, "double_talk": self.p_double_talk}

    def scenario_probs(self) -> dict[str, float]:
        """Probability of each scenario (sums to 1)."""
        w = self._weights()
        total = sum(w.values())
        keep = 1.0 - (self.p_interferer if self.personalized else 0.0)
        probs = {k: keep * v / total for k, v in w.items()}
        probs["interferer"] = self.p_interferer if self.personalized else 0.0
        return probs

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))


@dataclass
class Mixture:
    """One training/evaluation example; arrays are float32 at ``sample_rate``.

    mic: microphone signal (model input); far: far-end reference (zeros without echo);
    target: what the model should output (near-end speech with early reflections only; zeros for
    far-end single talk); enroll: the target speaker, other utterances; parts (only with
    ``keep_parts``): the mic's components (speech, echo, interferer, noise) after level scaling.
    """

    mic: np.ndarray
    far: np.ndarray
    target: np.ndarray
    enroll: np.ndarray
    scenario: str
    meta: dict = field(default_factory=dict)
    sample_rate: int = 16000
    parts: dict[str, np.ndarray] | None = None


class Simulator:
    """Map-style dataset of mixtures from one split of a corpus (``prepare_corpus``'s root or manifest)."""

    def __init__(self, corpus: str | os.PathLike | Manifest, split: str = "train", config: SimConfig | None = None,
                 seed: int = 0, length: int = 10000, keep_parts: bool = False, cache_items: int = 256):
        if split not in SPLITS:
            raise PocketVQEError(f"split {split!r} is not one of {SPLITS}")
        self.manifest = corpus if isinstance(corpus, Manifest) else load_manifest(corpus)
        self.split, self.config, self.seed, self.length = split, config or SimConfig(), int(seed), int(length)
        self.keep_parts, self.epoch = keep_parts, 0
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_items = cache_items
        where = f"split {split} of the corpus at {self.manifest.root}"
        fix = "build a fuller corpus (`pocketvqe data prepare`) or give --speech/--noise folders"
        self.speech: dict[str, list[CorpusEntry]] = {}
        for e in self.manifest.select("speech", split):
            self.speech.setdefault(e.speaker, []).append(e)
        self.targets = sorted(s for s, es in self.speech.items() if len(es) >= 2)
        if not self.targets:
            raise PocketVQEError(f"no speaker with 2+ utterances in {where}: {fix}")
        self._weight = speaker_weights(self.speech, self.config.p_tts_talker)
        self.farend: dict[str, list[CorpusEntry]] = {}
        for e in self.manifest.select("farend", split):
            self.farend.setdefault(e.speaker, []).append(e)
        self.noises = self.manifest.select("noise", split)
        if not self.noises:
            raise PocketVQEError(f"no noise in {where}: {fix}")
        rirs = self.manifest.select("rir", split)
        lo, hi = self.config.rt60_s
        self.rooms = [e for e in rirs if lo <= (e.meta.get("rt60_measured") or e.meta.get("rt60", lo)) <= hi] or rirs
        probs = self.config.scenario_probs()
        if not self.rooms and any(probs[s] > 0 for s in SCENARIOS if s != "noise"):
            raise PocketVQEError(f"no room impulse responses in {where}: add the rooms source or --rir folders")
        if len(self.speech) < 2 and any(probs[s] > 0 for s in ("echo_fe_st", "double_talk", "interferer")) \
                and not self.farend:
            raise PocketVQEError(f"echo and interferer scenarios need 2+ speakers in {where}: {fix}")
        self._scen = [s for s in SCENARIOS if probs[s] > 0]
        self._scen_cdf = np.cumsum([probs[s] for s in self._scen])

    # -- dataset protocol --------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Mixture:
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for a simulator of length {self.length}")
        return self.make(i % self.length)

    def set_epoch(self, epoch: int) -> None:
        """Draw new mixtures for a new epoch (index i of epoch e is still always the same clip)."""
        self.epoch = int(epoch)

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(i)])

    def scenario_of(self, i: int) -> str:
        """The scenario of clip ``i`` without making the clip."""
        return self._pick_scenario(self._rng(i))

    def _pick_scenario(self, rng) -> str:
        u = rng.random() * self._scen_cdf[-1]
        return self._scen[min(int(np.searchsorted(self._scen_cdf, u, side="right")), len(self._scen) - 1)]

    # -- audio access ----------------------------------------------------------------------------------
    def _read(self, e: CorpusEntry, all_channels: bool = False) -> np.ndarray:
        key = f"{e.path}|{all_channels}"
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        x, sr = sf.read(str(self.manifest.path_of(e)), dtype="float32", always_2d=True)
        x = x.T if all_channels else x.mean(axis=1, keepdims=True).T
        if sr != self.config.sample_rate:
            x = np.stack([resample(c, sr, self.config.sample_rate) for c in x])
        x = np.ascontiguousarray(x if all_channels else x[0])
        self._cache[key] = x
        if len(self._cache) > self._cache_items:
            self._cache.popitem(last=False)
        return x

    def _speech(self, rng, utts: list[CorpusEntry], n: int, exclude: set[str] = frozenset(), keep_out: int = 0):
        """``n`` samples of one talker: utterances back to back with pauses, cropped at a random point."""
        pool = [u for u in utts if u.path not in exclude] or list(utts)
        order = rng.permutation(len(pool))
        if keep_out and len(order) > keep_out:
            order = order[:-keep_out]
        sr = self.config.sample_rate
        pieces, used, total, k = [np.zeros(int(rng.uniform(0, 0.3) * sr), np.float32)], [], 0, 0
        while total < n:
            u = pool[order[k % len(order)]]
            x = self._read(u)
            x = x * (0.05 / (rms(x) + 1e-9))
            if len(x) > n:
                x = fit(rng, x, n)
            pieces += [x.astype(np.float32), np.zeros(int(rng.uniform(0.1, 0.6) * sr), np.float32)]
            total = sum(len(p) for p in pieces)
            if u.path not in used:
                used.append(u.path)
            k += 1
        s = np.concatenate(pieces)
        off = int(rng.integers(0, max(1, len(s) - n)))
        return s[off:off + n], used

    def _noise(self, rng, n: int):
        picks = [self.noises[int(rng.integers(len(self.noises)))]]
        x = fit(rng, self._read(picks[0]), n)
        x = x / (rms(x, active=False) + 1e-9)
        if rng.random() < self.config.p_second_noise:
            picks.append(self.noises[int(rng.integers(len(self.noises)))])
            y = fit(rng, self._read(picks[1]), n)
            x = x + y / (rms(y, active=False) + 1e-9) * 10 ** (rng.uniform(-10, 0) / 20)
        return x.astype(np.float32), [p.path for p in picks]

    def _room(self, rng):
        """(target, interferer, echo) impulse responses and the room's meta."""
        e = self.rooms[int(rng.integers(len(self.rooms)))]
        h = self._read(e, all_channels=True)
        if h.shape[0] >= 3:
            return h[0], h[1], h[2], e.path, e.meta.get("rt60_measured") or e.meta.get("rt60")
        others = [self._read(self.rooms[int(rng.integers(len(self.rooms)))], all_channels=True)[0] for _ in range(2)]
        return h[0], others[0], others[1], e.path, e.meta.get("rt60")

    def _talker(self, rng, pool: dict[str, list[CorpusEntry]], candidates, avoid: set[str] = frozenset()) -> str:
        spks = sorted(s for s in candidates if s not in avoid) or sorted(candidates)
        w = np.array([self._weight.get(s, 1.0) for s in spks])
        return spks[int(rng.choice(len(spks), p=w / w.sum()))]

    def _other_talker(self, rng, avoid: set[str], farend: bool = False):
        pool = self.farend if (farend and self.farend) else self.speech
        spk = self._talker(rng, pool, pool, avoid)
        return spk, pool[spk]

    # -- the mixture -----------------------------------------------------------------------------------
    def make(self, i: int, scenario: str | None = None) -> Mixture:
        """Clip ``i``; ``scenario`` forces a scenario (everything else is still drawn from clip ``i``'s seed)."""
        cfg, rng = self.config, self._rng(i)
        drawn = self._pick_scenario(rng)
        scenario = scenario or drawn
        if scenario not in SCENARIOS:
            raise PocketVQEError(f"scenario {scenario!r} is not one of {SCENARIOS}")
        n, sr = cfg.clip_samples, cfg.sample_rate
        meta: dict = {"index": int(i), "seed": self.seed, "epoch": self.epoch, "split": self.split,
                      "scenario": scenario, "snr_db": None, "ser_db": None, "sir_db": None, "delay_ms": None,
                      "rt60": None, "room": None, "nonlinearity": None, "far_speaker": None,
                      "interferer_speaker": None}
        spk = self._talker(rng, self.speech, self.targets)
        near, used = self._speech(rng, self.speech[spk], n, keep_out=1)
        meta.update(speaker=spk, utterances=used)
        h_t, h_i, h_e, room, rt60 = self._room(rng) if self.rooms else (None,) * 5
        if scenario == "reverb" and h_t is None:
            raise PocketVQEError(f"scenario reverb needs rooms: split {self.split} of {self.manifest.root} has none")
        reverb = scenario == "reverb" or (scenario in ("echo_ne_st", "double_talk", "interferer")
                                          and h_t is not None and rng.random() < cfg.p_reverb_near)
        if reverb:
            meta.update(room=room, rt60=rt60)
            speech, target = convolve(near, h_t), convolve(near, early_part(h_t))
        else:
            speech, target = near, near.copy()
        if scenario == "echo_fe_st":
            speech, target = np.zeros(n, np.float32), np.zeros(n, np.float32)
        parts = {"speech": speech}
        far = np.zeros(n, np.float32)
        if scenario in ECHO_SCENARIOS:
            fspk, futts = self._other_talker(rng, {spk}, farend=True)
            far, _ = self._speech(rng, futts, n)
            far = set_level(far, rng.uniform(*cfg.far_level_dbfs))
            driven, nl = loudspeaker(rng, far, cfg.p_nonlinear)
            d = int(rng.uniform(*cfg.delay_ms) * sr / 1000)
            echo = np.r_[np.zeros(d, np.float32), driven][:n]
            echo = convolve(echo, h_e) if h_e is not None else echo
            if scenario == "double_talk":
                meta["ser_db"] = float(rng.uniform(*cfg.ser_db))
                echo = scale_to_ratio(speech, echo, meta["ser_db"])
            else:
                echo = set_level(echo, -26.0)
            parts["echo"] = echo
            meta.update(far_speaker=fspk, delay_ms=1000 * d / sr, nonlinearity=nl, room=room,
                        echo_rt60=rt60 if h_t is not None else None)
        if scenario == "interferer":
            ispk, iutts = self._other_talker(rng, {spk})
            inter, _ = self._speech(rng, iutts, n)
            inter = convolve(inter, h_i) if reverb else inter
            meta["sir_db"] = float(rng.uniform(*cfg.sir_db))
            parts["interferer"] = scale_to_ratio(speech, inter, meta["sir_db"])
            meta["interferer_speaker"] = ispk
        noise, meta["noise"] = self._noise(rng, n)
        ref = parts["echo"] if scenario == "echo_fe_st" else speech
        meta["snr_db"] = float(rng.uniform(*cfg.snr_db))
        parts["noise"] = scale_to_ratio(ref, noise, meta["snr_db"], x_active=False)
        mic = np.sum(list(parts.values()), axis=0).astype(np.float32)
        # level: one gain for the mic, its parts and the target; never above full scale
        want = float(rng.uniform(*cfg.level_dbfs))
        g = min(10 ** (want / 20) / (rms(mic) + 1e-12), 0.99 / (float(np.max(np.abs(mic))) + 1e-12))
        mic, target = mic * g, target * g
        parts = {k: v * g for k, v in parts.items()}
        meta["level_dbfs"] = float(level_db(mic))
        meta["clipped"] = bool(rng.random() < cfg.p_clip)
        if meta["clipped"]:
            c = float(np.max(np.abs(mic))) * rng.uniform(0.3, 0.8)
            mic = np.clip(mic, -c, c)
        if float(np.max(np.abs(far))) > 0.99:
            far = far * (0.99 / float(np.max(np.abs(far))))
        enroll, meta["enroll_utterances"], meta["enroll_snr_db"] = self._enroll(rng, spk, set(used))
        meta["enroll_overlap"] = bool(set(used) & set(meta["enroll_utterances"]))
        return Mixture(mic=mic.astype(np.float32), far=far.astype(np.float32), target=target.astype(np.float32),
                       enroll=enroll, scenario=scenario, meta=meta, sample_rate=sr,
                       parts={k: v.astype(np.float32) for k, v in parts.items()} if self.keep_parts else None)

    def _enroll(self, rng, spk: str, used: set[str]):
        cfg = self.config
        m = int(rng.uniform(*cfg.enroll_seconds) * cfg.sample_rate)
        x, eused = self._speech(rng, self.speech[spk], m, exclude=used)
        snr = None
        if rng.random() < cfg.p_enroll_noisy:
            snr = float(rng.uniform(*cfg.enroll_snr_db))
            noise, _ = self._noise(rng, m)
            x = x + scale_to_ratio(x, noise, snr, x_active=False)
        x = set_level(x, rng.uniform(*cfg.level_dbfs))
        peak = float(np.max(np.abs(x)))
        if peak > 0.99:
            x = x * (0.99 / peak)
        return x.astype(np.float32), eused, snr


def speaker_weights(speech: dict[str, list[CorpusEntry]], p_tts: float) -> dict[str, float]:
    """Talker draw weights: sqrt of each speaker's hours (big speakers more often, small ones still
    heard); formant/diphone TTS voices share ``p_tts`` of the mass when recorded/neural voices exist."""
    w = {s: float(np.sqrt(sum(e.duration for e in es))) for s, es in speech.items()}
    tts = {s for s, es in speech.items() if all(e.source in FORMANT_TTS for e in es)}
    real = set(w) - tts
    if not tts or not real:
        return w
    t_sum, r_sum = sum(w[s] for s in tts), sum(w[s] for s in real)
    return {s: (p_tts * v / t_sum if s in tts else (1 - p_tts) * v / r_sum) + 1e-9 for s, v in w.items()}


def collate_mixtures(batch: list[Mixture]) -> dict:
    """Stack mixtures for a torch DataLoader: mic/far/target (B, T); enroll zero-padded (B, Te) with
    ``enroll_lengths`` (B,); ``scenario`` and ``meta`` as lists. Imports torch only when called."""
    if not batch:
        raise PocketVQEError("collate_mixtures got an empty batch")
    lens = {len(m.mic) for m in batch}
    if len(lens) != 1:
        raise PocketVQEError(f"mixtures of different lengths {sorted(lens)} in one batch: "
                             "use one SimConfig.clip_seconds")
    te = max(len(m.enroll) for m in batch)
    enroll = np.zeros((len(batch), te), np.float32)
    for k, m in enumerate(batch):
        enroll[k, :len(m.enroll)] = m.enroll
    return {"mic": torch.from_numpy(np.stack([m.mic for m in batch])),
            "far": torch.from_numpy(np.stack([m.far for m in batch])),
            "target": torch.from_numpy(np.stack([m.target for m in batch])),
            "enroll": torch.from_numpy(enroll),
            "enroll_lengths": torch.tensor([len(m.enroll) for m in batch], dtype=torch.long),
            "scenario": [m.scenario for m in batch], "meta": [m.meta for m in batch]}
