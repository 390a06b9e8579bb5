"""Ship a trained run: strip the optimizer from its checkpoint and write the model card beside it.

>>> ship("runs/dvqe-s16/last.pt", "models/checkpoints/dvqe-s16.pt", run_dir="runs/dvqe-s16",
...      command="pocketvqe train --config dvqe-s16 ...", eval_md="eval.md")
"""
from __future__ import annotations

import json
from pathlib import Path

from pocketvqe.errors import PocketVQEError
from pocketvqe.fileio import atomic_write_text
from pocketvqe.models import load_checkpoint, save_checkpoint


def _log(run_dir: Path) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind") == "train"], [r for r in rows if r.get("kind") == "valid"]


def _train_summary(run_dir: Path) -> dict:
    train, valid = _log(run_dir)
    if not train:
        raise PocketVQEError(f"{run_dir}/log.jsonl has no training steps: is this a training run folder?")
    cfg = json.loads((run_dir / "train_config.json").read_text())
    tail = train[-50:]
    return {"steps": train[-1]["step"], "wall_s": sum(r.get("sec", 0.0) for r in train),
            "final_loss": sum(r["loss"] for r in tail) / len(tail), "valid": valid, "recipe": cfg["train"],
            "world_size": cfg.get("world_size", 1), "init": cfg.get("init")}


def _valid_table(valid: list[dict]) -> str:
    lines = ["| step | valid loss | input loss | SI-SDR in -> out (dB) |", "|---:|---:|---:|---|"]
    for v in valid:
        lines.append(f"| {v['step']} | {v['valid_loss']:.4f} | {v['valid_loss_input']:.4f} | "
                     f"{v['si_sdr_input']:.1f} -> {v['si_sdr']:.1f} |")
    return "\n".join(lines)


def ship(src: str | Path, dst: str | Path, run_dir: str | Path, command: str,
         eval_md: str | Path | None = None, data: str = "", notes: str = "") -> Path:
    """Write ``dst`` (weights only, no optimizer) and ``dst`` with suffix ``.md`` (the model card)."""
    run_dir, dst = Path(run_dir), Path(dst)
    enh, meta = load_checkpoint(src)
    s = _train_summary(run_dir)
    save_checkpoint(dst, enh, meta={"trained_steps": s["steps"], "train_recipe": s["recipe"],
                                    "source_run": run_dir.name, "command": command})
    r = s["recipe"]
    n_params = sum(p.numel() for p in enh.parameters())
    card = [f"# {enh.cfg.name} — model card", "",
            f"`{dst.name}`: {n_params:,} parameters, {enh.cfg.sample_rate} Hz, hop {enh.cfg.hop}, "
            f"algorithmic latency {enh.cfg.algorithmic_latency_ms:.0f} ms.", "",
            "## Training", "",
            f"- Command: `{command}`",
            f"- Steps: {s['steps']} × global batch {r['batch']} clips of {r['clip_seconds']} s "
            f"(AdamW lr {r['lr']} cosine to {r['lr'] * r['lr_final']:.2g}, warmup {r['warmup']}, "
            f"grad clip {r['grad_clip']}, seed {r['seed']}), {s['world_size']} process(es) on {r['device']}",
            f"- Initialised from: {s['init'] or 'random (seeded)'}",
            f"- Wall time (sum of step times in log.jsonl): {s['wall_s'] / 60:.0f} min",
            f"- Loss: complex compressed MSE (exponent {r['loss_exponent']}, magnitude weight "
            f"{r['loss_mag_weight']}); mean of the last 50 steps {s['final_loss']:.4f}",
            f"- Data: {data or 'the offline corpus (`pocketvqe data prepare`), simulator scenarios ' + (', '.join(r['scenarios']) or 'all the model serves')}",
            "", "### Validation during training", "", _valid_table(s["valid"])]
    if eval_md:
        card += ["", "## Evaluation", "", Path(eval_md).read_text().strip()]
    if notes:
        card += ["", "## Notes", "", notes.strip()]
    path = dst.with_suffix(".md")
    atomic_write_text(path, "\n".join(card) + "\n")
    return path
