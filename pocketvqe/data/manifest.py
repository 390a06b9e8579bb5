"""The corpus manifest: one record per audio file, and speaker-disjoint train/valid/test splits.

``manifest.json`` lies at the corpus root. Paths of files the corpus built are relative to the
root; files of the user's own corpora (``--speech DIR`` ...) stay where they are (absolute paths).

>>> m = load_manifest("~/.cache/pocketvqe/corpus")          # doctest: +SKIP
>>> speech = m.select(kind="speech", split="train")         # doctest: +SKIP
>>> m.hours(kind="speech")                                 # doctest: +SKIP
2.41
>>> split_by_key(["spk1", "spk2", "spk3", "spk4"])["spk1"] in SPLITS
True
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import PocketVQEError
from ..fileio import atomic_write_text

KINDS = ("speech", "noise", "rir", "farend")
SPLITS = ("train", "valid", "test")
MANIFEST_NAME = "manifest.json"
FORMAT = "pocketvqe-corpus"
VERSION = 1


@dataclass(frozen=True)
class CorpusEntry:
    """One audio file of the corpus.

    ``speaker`` is set for speech/farend (``"asterisk:June"``); ``meta`` holds extras (for rooms:
    rt60, room size, what each channel is).
    """

    path: str
    kind: str
    source: str
    license: str
    duration: float
    split: str
    speaker: str = ""
    sample_rate: int = 16000
    channels: int = 1
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise PocketVQEError(f"corpus entry {self.path}: kind {self.kind!r} is not one of {KINDS}")
        if self.split not in SPLITS:
            raise PocketVQEError(f"corpus entry {self.path}: split {self.split!r} is not one of {SPLITS}")
        if not self.duration > 0:
            raise PocketVQEError(f"corpus entry {self.path}: duration {self.duration} is not positive")
        if self.kind in ("speech", "farend") and not self.speaker:
            raise PocketVQEError(f"corpus entry {self.path}: {self.kind} needs a speaker id")

    @classmethod
    def from_dict(cls, d: dict) -> "CorpusEntry":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Manifest:
    """All entries of a corpus plus where it lies; ``path_of`` resolves an entry's file."""

    root: Path
    entries: list[CorpusEntry]
    sources: list[str] = field(default_factory=list)

    def path_of(self, e: CorpusEntry) -> Path:
        p = Path(e.path)
        return p if p.is_absolute() else self.root / p

    def select(self, kind: str | None = None, split: str | None = None) -> list[CorpusEntry]:
        return [e for e in self.entries if (kind is None or e.kind == kind) and (split is None or e.split == split)]

    def speakers(self, split: str | None = None, kind: str = "speech") -> set[str]:
        return {e.speaker for e in self.select(kind, split)}

    def hours(self, kind: str | None = None, split: str | None = None) -> float:
        return sum(e.duration for e in self.select(kind, split)) / 3600.0

    def summary(self) -> str:
        """A table of files / hours / speakers per kind and split."""
        lines = [f"corpus {self.root}: {len(self.entries)} files, {self.hours():.2f} h, "
                 f"sources: {', '.join(self.sources)}",
                 f"{'kind':8s} {'split':6s} {'files':>7s} {'hours':>7s} {'speakers':>8s}"]
        for kind in KINDS:
            for split in SPLITS:
                sel = self.select(kind, split)
                if sel:
                    spk = len({e.speaker for e in sel if e.speaker}) or "-"
                    lines.append(f"{kind:8s} {split:6s} {len(sel):7d} {self.hours(kind, split):7.3f} {spk!s:>8s}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": VERSION, "sample_rate": 16000, "sources": self.sources,
                           "entries": [asdict(e) for e in self.entries]}, indent=1, sort_keys=True) + "\n"

    def save(self) -> Path:
        """Write ``manifest.json`` atomically; a manifest whose text is unchanged is not rewritten."""
        path = self.root / MANIFEST_NAME
        text = self.to_json()
        if not (path.exists() and path.read_text(encoding="utf-8") == text):
            atomic_write_text(path, text)
        return path


def load_manifest(root_or_path: str | os.PathLike) -> Manifest:
    """Load a corpus manifest from its root folder or the ``manifest.json`` path itself."""
    p = Path(root_or_path).expanduser()
    path = p / MANIFEST_NAME if p.is_dir() else p
    if not path.exists():
        raise PocketVQEError(f"no corpus manifest at {path}: build one with `pocketvqe data prepare --root {p}`")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PocketVQEError(f"corpus manifest {path} is unreadable ({exc}): "
                             "run `pocketvqe data prepare` again") from None
    if d.get("format") != FORMAT:
        raise PocketVQEError(f"{path} is not a pocketvqe corpus manifest: "
                             "point at the folder `pocketvqe data prepare` made")
    if d.get("version") != VERSION:
        raise PocketVQEError(f"corpus manifest {path} has version {d.get('version')}, this pocketvqe reads {VERSION}: "
                             "run `pocketvqe data prepare` again")
    return Manifest(path.parent, [CorpusEntry.from_dict(e) for e in d["entries"]], list(d.get("sources", [])))


def stable_hash(key: str) -> int:
    """A hash that is the same on every machine and Python run (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big")


def split_by_key(keys, fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)) -> dict[str, str]:
    """Assign each key (a speaker id, or a file for noise) to train/valid/test, deterministically.

    Keys are ordered by a stable hash; the first ``round(n*f_test)`` go to test, the next
    ``round(n*f_valid)`` to valid, the rest to train. With 3 or more keys, valid and test get at least one.
    """
    keys = sorted(set(keys), key=lambda k: (stable_hash(k), k))
    n = len(keys)
    n_test = max(1, round(n * fractions[2])) if n >= 3 and fractions[2] > 0 else 0
    n_valid = max(1, round(n * fractions[1])) if n >= 3 and fractions[1] > 0 else 0
    out = {}
    for i, k in enumerate(keys):
        out[k] = "test" if i < n_test else "valid" if i < n_test + n_valid else "train"
    return out


def check_disjoint(m: Manifest) -> None:
    """Raise when a speaker appears in more than one split (speech and far-end talkers alike)."""
    seen: dict[str, str] = {}
    for e in m.entries:
        if e.speaker:
            if seen.setdefault(e.speaker, e.split) != e.split:
                raise PocketVQEError(f"speaker {e.speaker} is in both {seen[e.speaker]} and {e.split}: "
                                     "splits must be speaker-disjoint; rename the speaker folders")
