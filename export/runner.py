"""Run a ``.pte`` device program on whole signals, frame by frame through ``executorch.runtime``.

`pocketvqe enhance --model x.pte` and `pocketvqe eval` (through ``pocketvqe.inference.load_model``)
run programs with the same contract as checkpoints: ``cfg``, ``enroll(pcm) -> speaker``, ``enhance(mic, far, speaker) -> np.ndarray``
(model rate, aligned to the input, same length). The program describes itself through its
constant methods (:func:`export.program.metadata`); a file that is not a pocketvqe program, a
format this pocketvqe cannot run, a truncated file or a state of the wrong shape is refused with
a :class:`PocketVQEError` that says what to do.

>>> prog = ProgramModel("build/pvqe-s16-int8.pte")                          # doctest: +SKIP
>>> y = prog.enhance(mic, speaker=prog.enroll(enroll_pcm))                  # doctest: +SKIP
>>> out, state = prog.step(mic[:160], state=prog.init_state())              # one hop  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from executorch.runtime import Runtime

from pocketvqe import __version__
from pocketvqe.errors import PocketVQEError
from pocketvqe.models import ModelConfig
from pocketvqe.models.dvector import dvector
from pocketvqe.models.step import enroll_pcm
from pocketvqe.quiet import runtime_log
from pocketvqe.signals import frames_of, pad_for_stream, run_step

from .program import FORMAT

READABLE_FORMATS = (FORMAT,)
_PTE_ID = b"ET12"                    # flatbuffer file identifier of an ExecuTorch program (bytes 4..8)


def _major_minor(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return (0, 0)


def check_metadata(meta: dict, source: str, expect: str | None = None) -> None:
    """Refuse programs this pocketvqe cannot run (format, newer version, another model)."""
    fmt = meta.get("format_version")
    if fmt is None:
        raise PocketVQEError(f"{source} is an ExecuTorch program but not a pocketvqe one (no format_version "
                             "method): export it with `pocketvqe export`")
    if fmt not in READABLE_FORMATS:
        raise PocketVQEError(f"{source} has program format {fmt!r} (pocketvqe {meta.get('pocketvqe_version', '?')}); "
                             f"this pocketvqe {__version__} runs {', '.join(READABLE_FORMATS)}: re-export it "
                             "with this version (`pocketvqe export --ckpt X`) or install the version that made it")
    theirs = str(meta.get("pocketvqe_version", "0.0"))
    if _major_minor(theirs) > _major_minor(__version__):
        raise PocketVQEError(f"{source} was made by pocketvqe {theirs}, newer than this {__version__}: "
                             "upgrade pocketvqe or re-export the program with this version")
    if expect is not None and meta.get("model_name") != expect:
        raise PocketVQEError(f"{source} is a {meta.get('model_name')!r} program, not {expect!r}: "
                             f"use a program exported from {expect!r}")


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if len(data) < 8:
        raise PocketVQEError(f"{path} is empty or truncated ({len(data)} bytes): export it again")
    if data[4:8] != _PTE_ID:
        what = "a bundled program (.bpte): give the .pte beside it" if data[4:8].startswith(b"BP") \
            else ("not an ExecuTorch program (no 'ET' program header): check the path, or export it again with "
                  "`pocketvqe export`")
        raise PocketVQEError(f"{path} is {what}")
    return data


def check_integrity(path: Path, data: bytes) -> bool:
    """Refuse a program whose bytes differ from what the ``manifest.json`` beside it records (size and
    sha256, written at export); True when checked, False when no manifest lists the file."""
    manifest = path.resolve().parent / "manifest.json"
    try:
        entries = json.loads(manifest.read_text()).get("files") or [] if manifest.is_file() else []
    except (OSError, ValueError, AttributeError):
        raise PocketVQEError(f"{manifest} is not readable JSON: export the program again to rewrite it") from None
    entry = next((f for f in entries if isinstance(f, dict) and f.get("file") == path.name), None)
    if entry is None:
        return False
    digest = hashlib.sha256(data).hexdigest()
    if entry.get("sha256") != digest or entry.get("bytes") not in (None, len(data)):
        raise PocketVQEError(f"{path} does not match its manifest ({len(data):,} bytes, sha256 {digest[:12]}...; "
                             f"{manifest.name} records {entry.get('bytes', '?')} bytes, sha256 "
                             f"{str(entry.get('sha256'))[:12]}...): the file was changed or damaged after export; "
                             "export it again, or copy it again together with its manifest")
    return True


class ProgramModel:
    """A loaded ``.pte``: ``cfg``, ``metadata``, ``state_names`` / ``state_shapes``, ``step``,
    ``enroll``, ``enhance``. The program bytes are held for the object's lifetime (the runtime
    does not copy them)."""

    def __init__(self, path: str | os.PathLike, expect: str | None = None):
        self.path = Path(path)
        self._data = _read_bytes(self.path)
        self.verified = check_integrity(self.path, self._data)     # against the manifest beside it, if any
        try:
            self._program = Runtime.get().load_program(self._data)
        except (RuntimeError, ValueError) as exc:
            raise PocketVQEError(f"{self.path} does not load as an ExecuTorch program ({str(exc)[:120]}): "
                                 "it is truncated or corrupt; export it again") from None
        self.metadata = self._read_metadata()
        check_metadata(self.metadata, str(self.path), expect)
        self.cfg = ModelConfig.from_dict(json.loads(self.metadata["config_json"]))
        self.precision = self.metadata["precision"]
        self.recipe = self.metadata.get("recipe") or None
        self.state_names = _names(self.metadata["state_names"])
        self.state_shapes = [tuple(s) for s in json.loads(self.metadata["state_shapes"])]
        self.enroll_state_shapes = [tuple(s) for s in json.loads(self.metadata.get("enroll_state_shapes", "[]"))]
        self.n_signals = 1 + int(self.cfg.has_far) + int(self.cfg.personalized)
        self._methods: dict = {}
        self._check_forward_signature()

    # ---- loading ----
    def _read_metadata(self) -> dict:
        names = self._program.method_names
        meta = {}
        for name in names:
            if name in ("forward", "enroll_step", "enroll_finish"):
                continue
            try:
                out = self._program.load_method(name).execute([])
            except RuntimeError:
                continue
            if len(out) == 1 and isinstance(out[0], (int, float, str, bool)):
                meta[name] = out[0]
        if "forward" not in names:
            raise PocketVQEError(f"{self.path} has no forward method: it is not a pocketvqe program")
        return meta

    def _check_forward_signature(self) -> None:
        info = self._program.metadata("forward")
        n_in = info.num_inputs()
        if n_in != self.n_signals + len(self.state_shapes):
            raise PocketVQEError(f"{self.path}: forward takes {n_in} inputs but its metadata describes "
                                 f"{self.n_signals} signals + {len(self.state_shapes)} states: the file is "
                                 "corrupt or was edited; export it again")

    def method(self, name: str):
        if name not in self._methods:
            if name not in self._program.method_names:
                raise PocketVQEError(f"{self.path.name} has no method {name!r} (it has "
                                     f"{', '.join(sorted(self._program.method_names))})")
            # the runtime's cpuinfo/threadpool lines at load say nothing about the user's run:
            # hidden unless POCKETVQE_RUNTIME_LOG=1 (as the native runner does)
            with runtime_log(None if os.environ.get("POCKETVQE_RUNTIME_LOG") == "1" else os.devnull):
                self._methods[name] = self._program.load_method(name)
        return self._methods[name]

    # ---- one hop ----
    def init_state(self) -> list[torch.Tensor]:
        return [torch.zeros(s) for s in self.state_shapes]

    def step(self, mic, far=None, speaker=None, state=None) -> tuple[np.ndarray, list[torch.Tensor]]:
        """One hop: ``mic[hop]`` (+ ``far[hop]``, ``speaker[D]``), state -> (enhanced[hop], new state)."""
        cfg, hop = self.cfg, self.cfg.hop
        sig = [_vector(mic, hop, "mic", f"one hop is {hop} samples at {cfg.sample_rate} Hz")]
        if cfg.has_far:
            sig.append(_vector(np.zeros(hop, np.float32) if far is None else far, hop, "far",
                               f"one hop is {hop} samples at {cfg.sample_rate} Hz"))
        elif far is not None:
            raise PocketVQEError(f"{cfg.name} has no far-end input: drop far")
        if cfg.personalized:
            if speaker is None:
                raise PocketVQEError(f"{cfg.name} is personalized: pass the enrolled speaker embedding "
                                     "(enroll(pcm), or --enroll ENROLL.wav)")
            sig.append(_vector(speaker, cfg.speaker_dim, "speaker", "enroll the speaker with this program"))
        state = self.init_state() if state is None else self._check_state(state, self.state_shapes, "state")
        out = self.method("forward").execute(sig + list(state))
        return out[0].numpy().reshape(-1), list(out[1:])

    def _check_state(self, state, shapes, what: str) -> list[torch.Tensor]:
        state = [torch.as_tensor(s, dtype=torch.float32).contiguous() for s in state]
        if len(state) != len(shapes):
            raise PocketVQEError(f"{self.path.name} takes {len(shapes)} {what} tensors, got {len(state)}: "
                                 "start from init_state() and pass back what the last call returned")
        names = self.state_names if what == "state" else _names(self.metadata.get("enroll_state_names", ""))
        for i, (s, shape) in enumerate(zip(state, shapes)):
            if tuple(s.shape) != tuple(shape):
                name = names[i] if i < len(names) else str(i)
                raise PocketVQEError(f"{what} tensor {i} ({name}) has shape {tuple(s.shape)}, the program "
                                     f"expects {tuple(shape)}: start from init_state()")
        return state

    # ---- whole signals (the pocketvqe.inference contract) ----
    def enroll(self, pcm: np.ndarray) -> torch.Tensor:
        """Speaker embedding (D,) from enrollment audio at the model's rate, computed by the program."""
        cfg = self.cfg
        if not cfg.personalized:
            raise PocketVQEError(f"{cfg.name} is not personalized: it takes no enrollment")
        if cfg.speaker_embedding != "internal":
            return torch.from_numpy(dvector(np.asarray(pcm, np.float32), cfg.sample_rate))
        step, finish = self.method("enroll_step"), self.method("enroll_finish")
        acc = [torch.zeros(s) for s in self.enroll_state_shapes]
        return enroll_pcm(pcm, cfg.hop, acc, lambda *a: step.execute(list(a)),
                          lambda *a: finish.execute(list(a))[0]).clone()

    def enhance(self, mic: np.ndarray, far: np.ndarray | None = None, speaker=None, progress=None) -> np.ndarray:
        """Stream the program over ``mic`` (model rate); output aligned to the input, same length;
        ``progress(hops)`` after each hop."""
        cfg, hop = self.cfg, self.cfg.hop
        delay, n = cfg.algorithmic_latency_samples, len(mic)
        x, f = pad_for_stream(cfg, mic, far)
        spk = None
        if cfg.personalized:
            if speaker is None:
                raise PocketVQEError(f"{cfg.name} is personalized: pass the enrolled speaker embedding "
                                     "(enroll(pcm), or --enroll ENROLL.wav)")
            spk = _vector(speaker, cfg.speaker_dim, "speaker", "enroll the speaker with this program").numpy()
        forward = self.method("forward")
        y, _ = run_step(lambda *a: forward.execute(list(a)), frames_of(x, f, hop, spk, tensors=True),
                        self.init_state(), on_frame=None if progress is None else (lambda i: progress(1)))
        return y[delay:delay + n]


def _names(text: str) -> list[str]:
    return [s for s in str(text).split(",") if s]


def _vector(x, n: int, what: str, hint: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, np.float32)).reshape(-1)
    if t.numel() != n:
        raise PocketVQEError(f"{what} has {t.numel()} samples, the program takes {n}: {hint}")
    return t
