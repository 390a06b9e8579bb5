"""Corpus sources that are recordings in Debian packages: asterisk prompts, pocketsphinx test speech,
sonic-pi samples and alsa's Noise.wav. Each ``build_*`` takes a BuildContext and returns entries.

Speaker splits are fixed so that test holds real voices never heard in training: asterisk's June
(French) and the LibriVox reader are test speakers; pocketsphinx's other talkers are validation.

>>> ASTERISK_LANGS
('en', 'es', 'fr', 'it', 'ru')
"""
from __future__ import annotations

import fnmatch
import re
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from .build import SR, BuildContext, load_mono, write_pcm16
from .debs import extract_debs, fetch_debs, find_tool
from .manifest import CorpusEntry, split_by_key

ASTERISK_LANGS = ("en", "es", "fr", "it", "ru")
ASTERISK_LICENSE = "CC-BY-SA-3.0"
# voice folder suffix -> split; Allison speaks both en and es, so both stay in train.
ASTERISK_SPLITS = {"Allison": "train", "Carlo": "train", "IvrvoiceRU": "train", "June": "test"}
POCKETSPHINX_SPLITS = {"librivox": "test", "cards": "valid", "misc": "valid", "dhd": "valid"}
MIN_SECONDS = 0.3
FFMPEG_BATCH = 48


def _unpack(ctx: BuildContext, pkgs: list[str]) -> Path:
    debs = fetch_debs(pkgs, ctx.cache / "debs", apt_dir=ctx.cache / "apt")
    tree = ctx.out.parent / f".x-{ctx.name}"
    if tree.exists():
        shutil.rmtree(tree)
    return extract_debs(debs, tree)


def _cap(files: list, ctx: BuildContext) -> list:
    """At most ``sizes.max_files``, spread evenly over the sorted list (so every subfolder is sampled)."""
    n = ctx.sizes.max_files
    if n is None or len(files) <= n:
        return files
    idx = np.linspace(0, len(files) - 1, n).round().astype(int)
    return [files[i] for i in sorted(set(idx))]


def decode_g722(files: list[Path], outs: list[Path], ctx: BuildContext) -> None:
    """Decode raw G.722 files to 16 kHz 16-bit WAV with ffmpeg, many files per ffmpeg call."""
    ffmpeg = find_tool("ffmpeg", ctx.cache)
    pairs = list(zip(files, outs))
    with ctx.bar(total=len(pairs), desc=f"{ctx.name}: G.722 -> wav", unit="file") as bar:
        for k in range(0, len(pairs), FFMPEG_BATCH):
            batch = pairs[k:k + FFMPEG_BATCH]
            args = ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
            for src, _ in batch:
                args += ["-f", "g722", "-i", str(src)]
            for i, (_, dst) in enumerate(batch):
                dst.parent.mkdir(parents=True, exist_ok=True)
                args += ["-map", f"{i}:a", "-ar", str(SR), "-ac", "1", "-c:a", "pcm_s16le", str(dst)]
            ffmpeg.run(args, what=f"decoding {len(batch)} G.722 files of {ctx.name}")
            bar.update(len(batch))


def build_asterisk(ctx: BuildContext, lang: str) -> list[CorpusEntry]:
    """Asterisk core sound prompts of one language (professional voice, G.722 wideband)."""
    pkg = f"asterisk-core-sounds-{lang}-g722"
    tree = _unpack(ctx, [pkg])
    base = tree / "usr/share/asterisk/sounds"
    files = sorted(f for f in base.rglob("*.g722") if "silence" not in f.relative_to(base).parts)
    files = _cap(files, ctx)
    outs = [ctx.out / f.relative_to(base).with_suffix(".wav") for f in files]
    decode_g722(files, outs, ctx)
    entries = []
    for out in outs:
        if sf.info(str(out)).frames < MIN_SECONDS * SR:     # a few prompts are (nearly) empty
            out.unlink()
            continue
        voice = out.relative_to(ctx.out).parts[0]        # e.g. fr_CA_f_June
        name = voice.split("_")[-1]
        entries.append(ctx.entry(out, kind="speech", source=pkg, license=ASTERISK_LICENSE,
                                 speaker=f"asterisk:{name}", split=ASTERISK_SPLITS.get(name, "train")))
    shutil.rmtree(tree)
    return entries


def build_pocketsphinx(ctx: BuildContext) -> list[CorpusEntry]:
    """pocketsphinx-testdata: LibriVox reading (test) and short command/digit utterances (valid), 16 kHz."""
    pkg = "pocketsphinx-testdata"
    tree = _unpack(ctx, [pkg])
    d = tree / "usr/share/pocketsphinx/test/data"
    groups = {"librivox": sorted((d / "librivox").glob("*.wav")), "cards": sorted((d / "cards").glob("*.wav")),
              "misc": [d / "goforward.raw", d / "numbers.raw", d / "something.raw"],
              "dhd": sorted((d / "tidigits").glob("dhd*.raw"))}
    entries = []
    for spk, files in groups.items():
        for f in files:
            if not f.exists():
                continue
            x = (np.fromfile(f, dtype="<i2").astype(np.float32) / 32768.0) if f.suffix == ".raw" else load_mono(f)
            out = write_pcm16(ctx.out / spk / (f.stem + ".wav"), x)
            entries.append(ctx.entry(out, kind="speech", source=pkg, license="BSD-2-Clause",
                                     speaker=f"pocketsphinx:{spk}", split=POCKETSPHINX_SPLITS[spk]))
    shutil.rmtree(tree)
    return entries


def dep5_licenses(copyright_file: Path) -> list[tuple[list[str], str]]:
    """(file patterns, license) paragraphs of a machine-readable debian/copyright file."""
    out = []
    for para in re.split(r"\n\s*\n", copyright_file.read_text(encoding="utf-8", errors="replace")):
        files = re.search(r"^Files:(.*(?:\n[ \t]+\S.*)*)", para, re.M)
        lic = re.search(r"^License:[ \t]*(\S.*)$", para, re.M)
        if files and lic:
            out.append((files.group(1).split(), lic.group(1).strip()))
    return out


def license_of(relpath: str, paragraphs: list[tuple[list[str], str]], default: str) -> str:
    """DEP-5 rule: the last paragraph whose pattern matches wins."""
    found = default
    for patterns, lic in paragraphs:
        if any(fnmatch.fnmatchcase(relpath, p) for p in patterns):
            found = lic
    return found


def build_sonic_pi(ctx: BuildContext) -> list[CorpusEntry]:
    """sonic-pi-samples: ambience, machines, percussion and loops as noise; per-file license from debian/copyright."""
    pkg = "sonic-pi-samples"
    tree = _unpack(ctx, [pkg])
    paras = dep5_licenses(tree / f"usr/share/doc/{pkg}/copyright")
    files = _cap(sorted((tree / "usr/share/sonic-pi/samples").glob("*.flac")), ctx)
    splits = split_by_key([f.stem for f in files], (0.8, 0.1, 0.1))
    entries = []
    for f in ctx.bar(files, desc=f"{ctx.name}: flac -> wav", unit="file"):
        x = load_mono(f)
        if len(x) < MIN_SECONDS * SR or not np.any(x):
            continue
        out = write_pcm16(ctx.out / (f.stem + ".wav"), x)
        entries.append(ctx.entry(out, kind="noise", source=pkg, split=splits[f.stem],
                                 license=license_of(f"etc/samples/{f.name}", paras, "CC0-1.0")))
    shutil.rmtree(tree)
    return entries


def build_alsa(ctx: BuildContext) -> list[CorpusEntry]:
    """alsa-utils' speaker-test Noise.wav (train noise)."""
    pkg = "alsa-utils"
    tree = _unpack(ctx, [pkg])
    x = load_mono(tree / "usr/share/sounds/alsa/Noise.wav")
    out = write_pcm16(ctx.out / "Noise.wav", x)
    shutil.rmtree(tree)
    return [ctx.entry(out, kind="noise", source=pkg, license="GPL-2.0", split="train")]
