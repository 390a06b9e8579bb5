"""A fixed evaluation set: ``n_per_scenario`` seeded mixtures of every enabled scenario, optionally
saved as a folder of float WAVs + ``eval_set.json`` (written in a staging folder and renamed,
so a reader never sees half a set; asking again with the same parameters reuses it).

Layout: ``OUT/0003_double_talk/{mic,far,target,enroll}.wav`` and ``OUT/eval_set.json``
(parameters and each clip's scenario and meta).

>>> clips = make_eval_set("~/.cache/pocketvqe/corpus", n_per_scenario=4, out_dir="eval/test")  # doctest: +SKIP
>>> again = load_eval_set("eval/test")                                                       # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from ..errors import PocketVQEError
from ..fileio import atomic_write_text
from .manifest import MANIFEST_NAME, Manifest, load_manifest
from .simulate import Mixture, SimConfig, Simulator

INDEX = "eval_set.json"
SIGNALS = ("mic", "far", "target", "enroll")


def _params(manifest: Manifest, split: str, n: int, seed: int, config: SimConfig) -> dict:
    text = (manifest.root / MANIFEST_NAME).read_bytes() if (manifest.root / MANIFEST_NAME).exists() else b""
    return {"split": split, "n_per_scenario": n, "seed": seed, "config": asdict(config),
            "manifest_sha1": hashlib.sha1(text).hexdigest()}


def make_eval_set(corpus: str | os.PathLike | Manifest, split: str = "test", n_per_scenario: int = 8,
                  seed: int = 20240601, config: SimConfig | None = None, out_dir: str | os.PathLike | None = None,
                  progress: bool = True) -> list[Mixture]:
    """``n_per_scenario`` mixtures of each scenario with nonzero probability in ``config``, in scenario order.

    With ``out_dir`` the set is saved there (and reloaded instead of rebuilt when its parameters match).
    """
    if n_per_scenario < 1:
        raise PocketVQEError(f"n_per_scenario={n_per_scenario}: give at least 1")
    config = config or SimConfig()
    manifest = corpus if isinstance(corpus, Manifest) else load_manifest(corpus)
    params = _params(manifest, split, n_per_scenario, seed, config)
    if out_dir is not None:
        out_dir = Path(out_dir).expanduser()
        index = out_dir / INDEX
        if index.exists() and json.loads(index.read_text()).get("params") == json.loads(json.dumps(params)):
            return load_eval_set(out_dir)
    scenarios = [s for s, p in config.scenario_probs().items() if p > 0]
    sim = Simulator(manifest, split, config, seed=seed, length=len(scenarios) * n_per_scenario)
    jobs = [(s, k) for s in scenarios for k in range(n_per_scenario)]
    clips = [sim.make(i, scenario=s) for i, (s, _) in enumerate(tqdm(jobs, desc=f"eval set ({split})", unit="clip",
                                                                      disable=not progress, leave=False))]
    if out_dir is not None:
        save_eval_set(clips, out_dir, params)
    return clips


def save_eval_set(clips: list[Mixture], out_dir: str | os.PathLike, params: dict | None = None) -> Path:
    """Write clips as float32 WAVs plus ``eval_set.json``; the folder appears complete or not at all."""
    out_dir = Path(out_dir).expanduser()
    staging = out_dir.parent / f".{out_dir.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    items = []
    for i, m in enumerate(clips):
        name = f"{i:04d}_{m.scenario}"
        (staging / name).mkdir()
        for sig in SIGNALS:
            sf.write(str(staging / name / f"{sig}.wav"), getattr(m, sig), m.sample_rate, subtype="FLOAT")
        items.append({"name": name, "scenario": m.scenario, "sample_rate": m.sample_rate, "meta": m.meta})
    atomic_write_text(staging / INDEX, json.dumps({"params": params or {}, "clips": items}, indent=1) + "\n")
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out_dir, old)
        os.replace(staging, out_dir)
        shutil.rmtree(old)
    else:
        os.replace(staging, out_dir)
    return out_dir


def load_eval_set(out_dir: str | os.PathLike) -> list[Mixture]:
    """The clips of a saved evaluation set, bit-exact."""
    out_dir = Path(out_dir).expanduser()
    index = out_dir / INDEX
    if not index.exists():
        raise PocketVQEError(f"no evaluation set at {out_dir} ({INDEX} missing): make one with "
                             "`pocketvqe data eval-set --out DIR`")
    clips = []
    for item in json.loads(index.read_text())["clips"]:
        sig = {s: sf.read(str(out_dir / item["name"] / f"{s}.wav"), dtype="float32")[0] for s in SIGNALS}
        clips.append(Mixture(**{k: np.asarray(v, np.float32) for k, v in sig.items()}, scenario=item["scenario"],
                             meta=item["meta"], sample_rate=item["sample_rate"]))
    return clips
