"""Float training: loss, alignment, PVQE end to end, overfitting, exact resume, 2-process CPU DDP.

Runs on a tiny model config (written as JSON, the way `pocketvqe train --config FILE` takes it) and
the quick corpus (built once per module, ~8 s). Whole module: about a minute on 2 CPU cores.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pocketvqe.cli import main
from pocketvqe.data import prepare_corpus
from pocketvqe.errors import PocketVQEError
from pocketvqe.models import (
    Enhancer,
    ModelConfig,
    get_config,
    init_checkpoint,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from pocketvqe.train import (
    CompressedSpectralLoss,
    TrainConfig,
    Trainer,
    enhance_aligned,
    load_init_weights,
    resolve_model_config,
    sim_config,
    speaker_embedding,
)
from pocketvqe.train import ddp as D
from pocketvqe.train.loop import make_loader

TINY = dataclasses.replace(get_config("dvqe-s16"), name="tiny", mic_channels=(4, 8, 8, 8), far_channels=(4, 8),
                           dec_channels=(8, 8, 8, 27), gru_hidden=16, align_delay=8)
TINY_P = dataclasses.replace(TINY, name="tiny-p", personalized=True, speaker_proj=8)
QUICK = ["--batch", "4", "--clip-seconds", "2", "--valid-clips", "4", "--workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    prepare_corpus(root, quick=True, progress=False)
    return root


@pytest.fixture(scope="module")
def tiny_json(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("configs")
    out = {}
    for cfg in (TINY, TINY_P):
        out[cfg.name] = d / f"{cfg.name}.json"
        out[cfg.name].write_text(json.dumps(cfg.to_dict()))
    return out


def fixed_batch(corpus, model_cfg, batch=4, seconds=2.0, **kw):
    cfg = TrainConfig(model=model_cfg.name, steps=1, batch=batch, clip_seconds=seconds, data=str(corpus),
                      workers=0, **kw)
    loader, _ = make_loader(cfg, model_cfg, D.DistEnv(), 0)
    return next(iter(loader))


# ------------------------------------------------------------------------------------------- config
def test_train_config_validates_and_schedules():
    cfg = TrainConfig(steps=1000, lr=2e-3, warmup=100, lr_final=0.1)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    lrs = [cfg.lr_at(s) for s in range(cfg.steps)]
    assert all(a < b for a, b in zip(lrs[:100], lrs[1:101]))          # warmup rises ...
    assert lrs[100] == pytest.approx(2e-3)                              # ... to the peak
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:]))           # cosine never rises
    assert cfg.lr_at(cfg.steps) == pytest.approx(2e-4)                  # ends at lr * lr_final
    for bad in ({"batch": 0}, {"lr": -1.0}, {"lr": math.nan}, {"loss_mag_weight": 1.5}, {"loss_exponent": 0.0},
                {"scenarios": ("noise", "wind")}, {"device": "tpu"}, {"clip_seconds": 0.5},
                {"enroll_seconds": (4.0, 2.0)}, {"steps": 2.5}):
        with pytest.raises(PocketVQEError):
            TrainConfig(**bad)
    with pytest.raises(PocketVQEError, match="unknown train config keys"):
        TrainConfig.from_dict({"steps": 3, "learning_rate": 1.0})


def test_scenarios_follow_the_model():
    probs = sim_config(TrainConfig(), get_config("dvqe-s16")).scenario_probs()
    assert {s for s, p in probs.items() if p > 0} == {"noise", "reverb", "echo_fe_st", "echo_ne_st", "double_talk"}
    probs = sim_config(TrainConfig(), get_config("pvqe-s16")).scenario_probs()
    assert probs["interferer"] == pytest.approx(0.3)                   # PVQE: 30 % interfering talker
    probs = sim_config(TrainConfig(), get_config("ns-s16")).scenario_probs()
    assert {s for s, p in probs.items() if p > 0} == {"noise", "reverb"}
    with pytest.raises(PocketVQEError, match="no far-end branch"):
        sim_config(TrainConfig(scenarios=("noise", "double_talk")), get_config("ns-s16"))
    with pytest.raises(PocketVQEError, match="not personalized"):
        sim_config(TrainConfig(scenarios=("interferer",)), get_config("dvqe-s16"))


# --------------------------------------------------------------------------------------------- loss
def _reference_loss(est, tgt, n_fft=320, hop=160, c=0.3, w=0.7, eps=1e-8):
    """numpy: sqrt-Hann frames over [zeros(n_fft - hop), x], rfft, compressed MSE blend."""
    win = np.sqrt(np.hanning(n_fft + 1)[:-1])

    def spec(x):
        x = np.concatenate([np.zeros(n_fft - hop), x])
        frames = np.stack([x[t * hop:t * hop + n_fft] for t in range((len(x) - n_fft) // hop + 1)])
        return np.fft.rfft(frames * win, axis=1)

    se, st = spec(est.astype(np.float64)), spec(tgt.astype(np.float64))
    pe, pt = np.abs(se) ** 2 + eps, np.abs(st) ** 2 + eps
    mag = np.mean((pe ** (c / 2) - pt ** (c / 2)) ** 2)
    cplx = np.mean(np.abs(se * pe ** ((c - 1) / 2) - st * pt ** ((c - 1) / 2)) ** 2)
    return w * mag + (1 - w) * cplx


def test_loss_is_the_compressed_complex_mse():
    rng = np.random.default_rng(0)
    est, tgt = (rng.standard_normal((2, 3200)) * 0.1).astype(np.float32)
    loss = CompressedSpectralLoss(320, 160, exponent=0.3, mag_weight=0.7)
    got = float(loss(torch.from_numpy(est)[None], torch.from_numpy(tgt)[None]))
    assert got == pytest.approx(_reference_loss(est, tgt), rel=1e-4)
    t = torch.from_numpy(tgt)[None]
    assert float(loss(t, t)) == 0.0
    # a sign flip keeps every magnitude: only the complex term (weight 0.3) remains
    mag, cplx, short = loss.terms(-t, t)
    assert float(mag) < 1e-9 * float(cplx)
    assert float(loss(-t, t)) == pytest.approx(0.3 * float(cplx), rel=1e-6)
    # silent target (far-end single talk) and a silent estimate: finite loss and gradient
    e = torch.zeros(1, 3200, requires_grad=True)
    z = loss(e, torch.zeros(1, 3200)) + loss(torch.from_numpy(est)[None], torch.zeros(1, 3200))
    z.backward()
    assert math.isfinite(float(z.detach())) and torch.isfinite(e.grad).all()


def test_speech_keeping_term_charges_removed_speech_more_than_residual_noise():
    rng = np.random.default_rng(1)
    t = torch.from_numpy((rng.standard_normal(3200) * 0.1).astype(np.float32))[None]
    plain = CompressedSpectralLoss(320, 160)
    keep = CompressedSpectralLoss(320, 160, keep_weight=1.0)
    quiet, loud = 0.5 * t, 1.5 * t                    # speech taken away / left too loud
    assert float(keep(t, t)) == 0.0
    # each output's extra over the plain loss is its shortfall term: all of the quiet one's magnitude
    # error, none of the loud one's (the mutation: keep_weight=0 gives the plain loss, no extra)
    assert float(keep(quiet, t) - plain(quiet, t)) == pytest.approx(float(plain.terms(quiet, t)[0]), rel=1e-5)
    assert float(keep(loud, t)) == pytest.approx(float(plain(loud, t)), rel=1e-6)
    assert float(CompressedSpectralLoss(320, 160, keep_weight=0.0)(quiet, t)) == float(plain(quiet, t))
    with pytest.raises(ValueError, match="keep_weight"):
        CompressedSpectralLoss(320, 160, keep_weight=-1.0)
    with pytest.raises(PocketVQEError, match="loss_keep_weight"):
        TrainConfig(loss_keep_weight=-0.5)


# ------------------------------------------------------------------------------ alignment and PVQE
def test_enhance_aligned_matches_offline_enhance():
    torch.manual_seed(0)
    enh = Enhancer(TINY).eval()
    rng = np.random.default_rng(1)
    mic, far = (rng.standard_normal((2, 16000)) * 0.05).astype(np.float32)
    with torch.no_grad():
        got = enhance_aligned(enh, torch.from_numpy(mic)[None], torch.from_numpy(far)[None])[0].numpy()
    want = enh.enhance(mic, far)                       # the model's own aligned offline path
    assert got.shape == mic.shape
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_speaker_embedding_ignores_padding():
    torch.manual_seed(0)
    enh = Enhancer(TINY_P).eval()
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal(8000) * 0.05).astype(np.float32), (rng.standard_normal(12800) * 0.05).astype(np.float32)
    batch = torch.zeros(2, 12800)
    batch[0, :8000], batch[1] = torch.from_numpy(a), torch.from_numpy(b)
    with torch.no_grad():
        emb = speaker_embedding(enh, batch, torch.tensor([8000, 12800]))
    np.testing.assert_allclose(emb[0].numpy(), enh.enroll(a).numpy(), atol=1e-5)
    np.testing.assert_allclose(emb[1].numpy(), enh.enroll(b).numpy(), atol=1e-5)


def test_pvqe_trains_enrollment_and_target_pass_together(corpus):
    batch = fixed_batch(corpus, TINY_P, enroll_seconds=(1.0, 2.0))
    grads = {}
    for detach in (False, True):
        torch.manual_seed(0)
        tr = Trainer(TrainConfig(model="tiny-p", batch=4), TINY_P)
        tr.model.train()
        out = tr.model(batch["mic"], batch["far"], batch["enroll"], batch["enroll_lengths"], detach_speaker=detach)
        tr.loss_fn(out, batch["target"]).backward()
        grads[detach] = {k: p.grad.clone() for k, p in tr.enh.named_parameters()}
    key = "net.mic.0.down.conv.conv.weight"            # shared by both passes
    diff = (grads[False][key] - grads[True][key]).abs().max() / grads[False][key].abs().max()
    assert diff > 1e-4, "no gradient reaches the weights through the enrollment pass"
    # the speaker projection only sees the embedding: its gradient through the embedding is non-zero
    assert grads[False]["net.bottleneck.proj.weight"].abs().sum() > 0


@pytest.mark.parametrize("model_cfg", [TINY, TINY_P], ids=["dvqe", "pvqe"])
def test_overfits_a_fixed_batch(corpus, model_cfg):
    batch = fixed_batch(corpus, model_cfg, enroll_seconds=(1.0, 2.0))
    tr = Trainer(TrainConfig(model=model_cfg.name, batch=4, lr=3e-3, warmup=0, lr_final=1.0), model_cfg)
    losses = [tr.train_step(batch)["loss"] for _ in range(30)]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.5 * losses[0], f"loss {losses[0]:.4f} -> {losses[-1]:.4f} in 30 steps on one batch"


def test_init_from_plain_model_into_personalized(tmp_path):
    torch.manual_seed(3)
    src = save_checkpoint(tmp_path / "plain.pt", Enhancer(TINY))
    enh = Enhancer(TINY_P)
    info = load_init_weights(enh, src)
    ref = read_checkpoint(src)["state_dict"]
    assert info["partial"] == 3                                          # GRU input gates r, z, n
    assert {k.split(".")[2] for k in info["skipped"]} <= {"proj", "norm"}
    w = enh.state_dict()["net.bottleneck.gru.ir.weight"]
    assert torch.equal(w[:, :ref["net.bottleneck.gru.ir.weight"].shape[1]], ref["net.bottleneck.gru.ir.weight"])
    assert torch.equal(enh.state_dict()["net.mic.0.down.conv.conv.weight"], ref["net.mic.0.down.conv.conv.weight"])


# ---------------------------------------------------------------------------------------- the CLI
def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_cli_run_checkpoints_validates_and_resumes_exactly(corpus, tiny_json, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--data", str(corpus), *QUICK, "--steps", "6", "--ckpt-every", "3", "--valid-every", "3",
              "--warmup", "2", "--lr", "3e-3"]
    assert main(["train", "--config", str(tiny_json["tiny"]), "--out", str(a), *common]) == 0
    for name in ("step-000003.pt", "step-000006.pt", "last.pt", "last.json", "train_config.json", "summary.json"):
        assert (a / name).exists(), name
    run_cfg = json.loads((a / "train_config.json").read_text())
    assert ModelConfig.from_dict(run_cfg["model"]) == TINY
    assert run_cfg["train"]["steps"] == 6 and run_cfg["train"]["loss_exponent"] == 0.3
    assert json.loads((a / "last.json").read_text())["meta"]["train_config"]["batch"] == 4
    log = _log(a)
    train_rows = [r for r in log if r["kind"] == "train"]
    valid_rows = [r for r in log if r["kind"] == "valid"]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in valid_rows] == [3, 6]
    assert all(math.isfinite(r["loss"]) for r in train_rows)
    assert math.isfinite(valid_rows[-1]["valid_loss"]) and math.isfinite(valid_rows[-1]["si_sdr_input"])
    assert valid_rows[0]["valid_loss_input"] == valid_rows[1]["valid_loss_input"] > 0         # fixed valid set
    enh, ckpt = load_checkpoint(a / "last.pt", expect=TINY)               # a plain loadable checkpoint too
    assert ckpt["meta"]["trained_steps"] == 6 and not enh.training

    # a run folder is never overwritten by a new run
    assert main(["train", "--config", str(tiny_json["tiny"]), "--out", str(a), *common]) == 1
    assert "already holds a run" in capsys.readouterr().err

    # resume from step 3 into another folder: steps 4-6 repeat the uninterrupted run
    assert main(["train", "--out", str(b), "--resume", str(a / "step-000003.pt"), "--no-progress"]) == 0
    sa, sb = read_checkpoint(a / "last.pt"), read_checkpoint(b / "last.pt")
    for k, v in sa["state_dict"].items():
        assert torch.allclose(v.float(), sb["state_dict"][k].float(), rtol=0, atol=1e-6), k
    oa, ob = sa["train_state"]["optimizer"]["state"], sb["train_state"]["optimizer"]["state"]
    for i in oa:
        assert torch.allclose(oa[i]["exp_avg_sq"], ob[i]["exp_avg_sq"], rtol=0, atol=1e-9)
    la = {r["step"]: r["loss"] for r in train_rows}
    lb = {r["step"]: r["loss"] for r in _log(b) if r["kind"] == "train"}
    assert sorted(lb) == [4, 5, 6]
    assert all(abs(la[s] - lb[s]) <= 1e-6 for s in lb), (la, lb)

    # shipping a run strips the optimizer and writes the model card from the run's own log
    from pocketvqe.train.card import ship
    card = ship(a / "last.pt", tmp_path / "tiny.pt", run_dir=a, command="pocketvqe train --config tiny")
    shipped = read_checkpoint(tmp_path / "tiny.pt")
    assert "train_state" not in shipped and shipped["meta"]["trained_steps"] == 6
    text = card.read_text()
    assert "Steps: 6 " in text and "| 6 |" in text and "`pocketvqe train --config tiny`" in text

    # weights-only checkpoints cannot be resumed (they can seed a new run with --init)
    init_ckpt = save_checkpoint(tmp_path / "w.pt", init_checkpoint(TINY))
    assert main(["train", "--out", str(tmp_path / "c"), "--resume", str(init_ckpt)]) == 1
    assert "--init" in capsys.readouterr().err


def test_resolve_model_config_accepts_names_and_json(tiny_json, tmp_path):
    assert resolve_model_config("pvqe-s16") == get_config("pvqe-s16")
    assert resolve_model_config(str(tiny_json["tiny-p"])) == TINY_P
    side = tmp_path / "side.json"
    side.write_text(json.dumps({"config": TINY.to_dict(), "meta": {}}))
    assert resolve_model_config(str(side)) == TINY
    with pytest.raises(PocketVQEError, match="neither a registered config"):
        resolve_model_config("dvqe-s99")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_process_cpu_smoke(corpus, tiny_json, tmp_path):
    """torchrun, 2 CPU processes (gloo): both ranks train on their half of each batch, replicas stay equal."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "pocketvqe.cli", "train", "--config", str(tiny_json["tiny-p"]),
           "--out", str(out), "--data", str(corpus), *QUICK, "--steps", "3", "--ckpt-every", "0",
           "--valid-every", "0", "--enroll-seconds", "1", "2"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    ranks = summary["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert [r["clips"] for r in ranks] == [6, 6]                        # 3 steps x 2 clips per rank
    assert [r["first_clip"] for r in ranks] == [0, 2]                   # each rank its own half of the batch
    assert summary["ddp_param_max_diff"] == 0.0                         # replicas identical after 3 steps
    log = _log(out)
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in log if r["kind"] == "train")
    assert math.isfinite(summary["valid"]["valid_loss"])
    enh, ckpt = load_checkpoint(out / "last.pt", expect=TINY_P)
    assert ckpt["train_state"]["world_size"] == 2 and ckpt["meta"]["trained_steps"] == 3
