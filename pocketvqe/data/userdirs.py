"""The user's own corpora (DNS Challenge, AEC Challenge, LibriSpeech, VCTK folders): scanned in place.

Files are not copied; the manifest records their absolute paths and sample rates (the simulator
resamples on read). Speaker ids come from the layout:

- ``DIR/<speaker>/...`` (LibriSpeech ``19/198/19-198-0001.flac``, VCTK ``p225/...``): the first folder;
- flat folders: ``reader_01234`` in DNS file names, ``19-198-0001`` LibriSpeech names, ``p225_001`` VCTK
  names; otherwise each file is its own speaker.

Speech and far-end speakers are split by speaker, noise and RIR files by file (``split_by_key``).

>>> speaker_of(Path("/d/LibriSpeech/19/198/19-198-0001.flac"), Path("/d/LibriSpeech"))
'19'
>>> speaker_of(Path("/dns/book_00002_chp_0012_reader_06709_7.wav"), Path("/dns"))
'reader_06709'
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import soundfile as sf

from ..errors import PocketVQEError
from ..fileio import atomic_write_text
from .build import BuildContext
from .manifest import CorpusEntry, split_by_key

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")
LICENSE = "user-supplied"
_FLAT_RULES = [re.compile(r"(reader_\d+)"), re.compile(r"^(\d+)-\d+-\d+"), re.compile(r"^(p\d{3})_")]


def speaker_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    if len(rel.parts) >= 2:
        return rel.parts[0]
    for rule in _FLAT_RULES:
        m = rule.search(path.stem)
        if m:
            return m.group(1)
    return path.stem


def _listing(d: Path) -> list[tuple[str, int, int]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(d, followlinks=True):
        dirnames.sort()
        for f in sorted(filenames):
            if f.lower().endswith(AUDIO_EXTS) and not f.startswith("."):
                p = os.path.join(dirpath, f)
                st = os.stat(p)
                out.append((p, st.st_size, int(st.st_mtime)))
    return out


def scan_dir(ctx: BuildContext, d: str | os.PathLike, kind: str) -> list[CorpusEntry]:
    """Entries for every audio file under ``d``; the scan is cached in ``ctx.cache`` until the folder changes."""
    d = Path(d).expanduser().resolve()
    if not d.is_dir():
        raise PocketVQEError(f"--{kind} {d}: not a folder: give a folder of audio files (wav/flac/ogg/mp3)")
    listing = _listing(d)
    if not listing:
        raise PocketVQEError(f"--{kind} {d}: no audio files (wav/flac/ogg/mp3) found: check the folder")
    sig = hashlib.sha1(json.dumps([kind, listing]).encode()).hexdigest()
    stamp = ctx.cache / "user" / f"{kind}-{hashlib.sha1(str(d).encode()).hexdigest()[:12]}.json"
    if stamp.exists():
        cached = json.loads(stamp.read_text())
        if cached.get("signature") == sig:
            return [CorpusEntry.from_dict(e) for e in cached["entries"]]
    label = d.name or "user"
    infos, bad = [], []
    for p, _, _ in ctx.bar(listing, desc=f"scanning {label} ({kind})", unit="file"):
        try:
            info = sf.info(p)
        except Exception:
            bad.append(p)
            continue
        if info.frames > 0:
            infos.append((Path(p), info))
    if not infos:
        raise PocketVQEError(f"--{kind} {d}: none of its {len(listing)} audio files is readable: "
                             "convert them to WAV/FLAC")
    per_speaker = kind in ("speech", "farend")
    keys = {p: f"{label}:{speaker_of(p, d)}" if per_speaker else f"{label}:{p.relative_to(d).as_posix()}"
            for p, _ in infos}
    splits = split_by_key(keys.values(), (0.9, 0.05, 0.05) if per_speaker else (0.8, 0.1, 0.1))
    entries = [CorpusEntry(path=str(p), kind=kind, source=f"user:{label}", license=LICENSE,
                           duration=round(info.frames / info.samplerate, 4), split=splits[keys[p]],
                           speaker=keys[p] if per_speaker else "", sample_rate=info.samplerate, channels=info.channels)
               for p, info in infos]
    atomic_write_text(stamp, json.dumps({"signature": sig, "skipped": bad,
                                         "entries": [e.__dict__ for e in entries]}) + "\n")
    return entries
