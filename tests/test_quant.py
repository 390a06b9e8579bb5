"""Int8 PTQ / QAT flows (pocketvqe.quant): GRU weights int8, quality bounds, .pt2 round trip, diagnosis,
mixed precision, bad input, CLI.

Runs on tiny configs (the dvqe-s16 structure: far end + AlignBlock + six-Linear GRU, and its
personalized twin) with random weights and realistic BatchNorm statistics, calibrated on a few
1 s simulated clips. Expensive objects (the PTQ'd step, the sensitivity report) are shared at
module scope. About 3 minutes on one thread.
"""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from pocketvqe.cli import main
from pocketvqe.data import corpus_root
from pocketvqe.errors import PocketVQEError
from pocketvqe.models import Enhancer, ModelConfig, get_config, save_checkpoint
from pocketvqe.models.checkpoint import randomize_bn_stats
from pocketvqe.quant import (
    RECIPES,
    PTQConfig,
    QATConfig,
    calibration_frames,
    convert,
    fine_tune,
    float_linears,
    int8_reference,
    load_quantized,
    prepare_qat,
    propose_keep_float,
    quantize,
    quantized_linears,
    recommended_ptq,
    save_quantized,
    sensitivity,
)
from pocketvqe.quant.calibration import CalibFrames
from pocketvqe.quant.debug import candidates, sqnr_db
from pocketvqe.quant.ptq import stream

TINY = dataclasses.replace(get_config("dvqe-s16"), name="tiny", mic_channels=(4, 8, 8, 8), far_channels=(4, 8),
                           dec_channels=(8, 8, 8, 27), gru_hidden=16, align_delay=8)
TINY_P = dataclasses.replace(TINY, name="tiny-p", personalized=True, speaker_proj=8)
GRU_GATES = ("ir", "iz", "in_", "hr", "hz", "hn")


_realistic_bn = randomize_bn_stats


def _model(cfg, seed=0) -> Enhancer:
    torch.manual_seed(seed)
    return _realistic_bn(Enhancer(cfg), seed).eval()


@pytest.fixture(scope="module")
def enh():
    return _model(TINY)


@pytest.fixture(scope="module")
def calib(enh):
    return calibration_frames(enh, n_clips=3, seconds=1.0, seed=0)


@pytest.fixture(scope="module")
def gm(enh, calib):
    return quantize(enh, PTQConfig(calib_clips=3, calib_seconds=1.0), calib, progress=False)


@pytest.fixture(scope="module")
def test_clip(enh):
    """A held-out double-talk clip (test split), as step frames."""
    from pocketvqe.data import SimConfig, Simulator
    sim = Simulator(corpus_root(None), "test", SimConfig(clip_seconds=1.0), seed=5)
    m = sim.make(0, scenario="double_talk")
    hop = enh.cfg.hop
    frames = [(torch.from_numpy(m.mic[t * hop:(t + 1) * hop].copy()), torch.from_numpy(m.far[t * hop:(t + 1) * hop].copy()))
              for t in range(len(m.mic) // hop)]
    return CalibFrames(frames, (0,))


def _float_out(enh, frames):
    from pocketvqe.models.step import StreamStep
    step = StreamStep(enh).eval()
    return torch.cat(stream(step, frames, step.init_state())), step.init_state()


# --------------------------------------------------------------------------------------------- PTQ
def test_calibration_covers_every_served_scenario(calib, enh):
    assert set(calib.summary["scenarios"]) == {"noise", "reverb", "echo_fe_st"}     # 3 clips, cycled
    assert len(calib) == 300 and calib.starts == [0, 100, 200]                        # 1 s = 100 hops each
    assert all(len(f) == 2 and f[0].shape == (enh.cfg.hop,) for f in calib)           # mic, far
    assert max(float(f[1].abs().max()) for f in calib[200:]) > 1e-3                   # echo clip has a far end


def test_every_gru_gate_linear_is_int8(gm, enh):
    """Count int8-weight linears per GRU gate module: all six gates (and the bottleneck fc), no fp32 linear."""
    q = quantized_linears(gm)
    gates = {f"enhancer.net.bottleneck.gru.{g}" for g in GRU_GATES}
    n_gru_linears = sum(isinstance(m, torch.nn.Linear) for m in enh.net.bottleneck.gru.modules())
    assert n_gru_linears == 6
    assert {k: v for k, v in q.items() if k in gates} == {g: 1 for g in gates}
    assert float_linears(gm) == []
    assert gm.meta["pocketvqe_quant"]["calibration"]["frames"] == 300


def test_ptq_int8_reference_close_to_float_on_held_out_clip(gm, enh, test_clip):
    """Streamed over a held-out simulated clip, the int8 step stays within 20 dB SNR of the float
    step (random weights with realistic BN statistics; measured ~30-36 dB)."""
    ref, init = _float_out(enh, test_clip)
    y = torch.cat(stream(gm, test_clip, init))
    assert torch.isfinite(y).all()
    assert sqnr_db(ref, y) > 20.0


def test_float_dsp_is_what_keeps_the_sound(gm, enh, calib, test_clip):
    """Quantizing the STFT/compression/CCM too (int8 PCM and power spectra) loses >= 10 dB."""
    ref, init = _float_out(enh, test_clip)
    gm_all = quantize(enh, PTQConfig(float_dsp=False), calib, progress=False)
    bad = sqnr_db(ref, torch.cat(stream(gm_all, test_clip, init)))
    good = sqnr_db(ref, torch.cat(stream(gm, test_clip, init)))
    assert good > bad + 10.0, (good, bad)


@pytest.fixture(scope="module")
def pt2(gm, enh, tmp_path_factory):
    d = tmp_path_factory.mktemp("pt2")
    path = save_quantized(d / "q.pt2", gm, {"quant": gm.meta["pocketvqe_quant"]}, enhancer=enh)
    assert not list(d.glob(".q.pt2*"))                              # atomic: no temporary left behind
    return path


def test_pt2_round_trip_is_identical(pt2, gm, enh, test_clip):
    path = pt2
    ep, meta = load_quantized(path)
    assert ModelConfig.from_dict(meta["config"]) == enh.cfg and meta["quant"]["mode"] == "ptq"
    assert "torch" in meta["versions"] and meta["quant"]["calibration"]["scenarios"]
    _, init = _float_out(enh, test_clip)
    a = torch.cat(stream(gm, test_clip, init))
    b = torch.cat(stream(ep.module(), test_clip, init))
    assert torch.equal(a, b)                                        # bit-identical after save/load


@pytest.mark.slow
def test_loaded_pt2_lowers_fully_delegated(pt2):
    """The export helper takes a loaded .pt2 as is: every compute op inside XNNPACK (~50 s)."""
    from pocketvqe.export.lower import lower, undelegated_compute_ops
    edge = lower(load_quantized(pt2)[0])
    assert undelegated_compute_ops(edge) == []


# ------------------------------------------------------------------------------------- diagnosis
@pytest.fixture(scope="module")
def outlier_model():
    """The tiny model with one outlier weight in the mask layer (``net.dec.3.subpix.conv``): with
    per-tensor weights its int8 grid gets 30x coarser, so that layer is the one to blame."""
    enh = _model(TINY, seed=1)
    with torch.no_grad():
        w = enh.net.dec[3].subpix.conv.weight
        w[0, 0, 0, 0] = 30 * w.abs().max()
    return enh


def test_report_blames_the_outlier_layer_and_keeping_it_float_raises_sqnr(outlier_model, calib):
    """The ranking puts the damaged layer first; the greedy proposal's first trial keeps it float and
    the end-to-end SQNR rises by more than 6 dB (measured: 19 -> 34 dB)."""
    cfg = PTQConfig(per_channel=False)
    rep = sensitivity(outlier_model, cfg, calib)
    assert math.isfinite(rep.e2e_sqnr_db) and len(rep.layers) > 20
    assert rep.ranked()[0].module == "net.dec.3.subpix.conv"
    assert candidates(rep)[0] == "net.dec.3.subpix.conv"
    prop = propose_keep_float(outlier_model, cfg, calib, target_db=99.0, report=rep, max_trials=1)
    assert prop.trials[0]["module"] == "net.dec.3.subpix.conv" and not prop.met
    assert prop.keep_float == ("net.dec.3.subpix.conv",)
    assert prop.sqnr_db > prop.baseline_db + 6.0, prop            # keeping the worst layer float helps
    assert abs(prop.baseline_db - rep.e2e_sqnr_db) < 1e-6          # same pipeline, same number


# -------------------------------------------------------------------------------------------- QAT
def test_qat_few_steps_run_and_convert_to_the_ptq_form(enh, test_clip):
    """Range init on one batch, then two QAT steps on 1 s clips: every activation range is set from
    the percentile of the per-frame extremes and (``fixed_ranges``) stays fixed while the weights train; finite
    losses, loss curve recorded, and the converted model is an int8 step with PTQ's signature (all
    GRU linears int8) whose SQNR against float is > 25 dB (measured 34.7 dB; moving-average ranges
    learned from scratch over the same two steps gave ~18 dB)."""
    from pocketvqe.quant.qat import _activation_fake_quants
    qm = prepare_qat(enh, QATConfig(steps=2, batch=2, clip_seconds=1.0, lr=1e-5, warmup=0, init_batches=1,
                                    fixed_ranges=True))
    hist = fine_tune(qm, progress=False)
    assert [h["step"] for h in hist] == [1, 2] and all(math.isfinite(h["loss"]) for h in hist)
    fqs = _activation_fake_quants(qm.prepared)
    assert qm.ranges["frames"] >= 2 * 100 and qm.ranges["set"] == qm.ranges["fake_quants"] == len(fqs) > 50
    for name, m in fqs.items():                                   # fixed ranges: the observers stayed off
        obs = m.activation_post_process
        assert int(m.observer_enabled) == 0 and int(m.fake_quant_enabled) == 1, name
        scale, _ = obs.calculate_qparams()
        assert torch.allclose(scale.reshape(-1), m.scale.reshape(-1), rtol=1e-5) and float(m.scale) > 0, name
    q = convert(qm)
    assert "percentile 99.9 init" in q.meta["pocketvqe_quant"]["calibration"]["observer"]
    assert sum(quantized_linears(q).values()) == 7 and float_linears(q) == []     # 6 gates + fc
    ref, init = _float_out(enh, test_clip)
    y = torch.cat(stream(q, test_clip, init))
    assert y.shape == ref.shape and sqnr_db(ref, y) > 25.0, sqnr_db(ref, y)


def test_qat_range_init_then_moving_ranges(enh):
    """The default recipe: after the percentile init the moving-average observers stay on and carry
    on from the initialized ranges. Streaming silence then shrinks each range by a 0.01 average step
    per frame (every range keeps >= 70 % of its span; observers restarted from scratch would keep
    13 of 77: silence has almost no range)."""
    from pocketvqe.quant.qat import _activation_fake_quants, init_ranges, stream_batch
    qm = prepare_qat(enh, QATConfig())
    assert qm.config.fixed_ranges is False
    g = torch.Generator().manual_seed(0)
    batch = {"mic": 0.1 * torch.randn(2, 1600, generator=g), "far": 0.1 * torch.randn(2, 1600, generator=g)}
    info = init_ranges(qm, [batch], 99.9, fixed=False)
    fqs = _activation_fake_quants(qm.prepared)
    assert info["set"] == len(fqs) and not info["fixed"]
    span = {k: float(m.activation_post_process.max_val) - float(m.activation_post_process.min_val)
            for k, m in fqs.items()}
    assert all(math.isfinite(v) and v >= 0.0 for v in span.values())
    with torch.no_grad():
        stream_batch(qm, torch.zeros(2, 1600), torch.zeros(2, 1600), None)
    for k, m in fqs.items():
        obs = m.activation_post_process
        assert int(m.observer_enabled) == 1, k
        assert float(obs.max_val) - float(obs.min_val) >= 0.7 * span[k], (k, span[k])


def test_qat_distill_targets_the_float_model(enh):
    """``distill=1`` measures the fake-quantized output against the float model's output on the same
    input, ``0`` against the clean target, and ``0.5`` is their mean. With a target unrelated to the
    input (noise), the float model is far closer to the int8 model than the target is (> 10x)."""
    from pocketvqe.quant.qat import _loss, init_ranges, stream_batch
    from pocketvqe.train import CompressedSpectralLoss
    from pocketvqe.train.loop import enhance_aligned
    qm = prepare_qat(enh, QATConfig())
    g = torch.Generator().manual_seed(1)
    batch = {"mic": 0.1 * torch.randn(2, 1600, generator=g), "far": 0.1 * torch.randn(2, 1600, generator=g),
             "target": 0.1 * torch.randn(2, 1600, generator=g)}
    init_ranges(qm, [batch], 99.9)
    loss_fn = CompressedSpectralLoss(enh.cfg.n_fft, enh.cfg.hop)
    with torch.no_grad():
        out = stream_batch(qm, batch["mic"], batch["far"], None)
        losses = {}
        for w in (0.0, 0.5, 1.0):
            qm.config = dataclasses.replace(qm.config, distill=w)
            losses[w] = float(_loss(qm, loss_fn, out, batch, None))
        teacher = enhance_aligned(enh.eval(), batch["mic"], batch["far"], None)
    assert losses[0.0] == pytest.approx(float(loss_fn(out, batch["target"])), rel=1e-6)
    assert losses[1.0] == pytest.approx(float(loss_fn(out, teacher)), rel=1e-6)
    assert losses[0.5] == pytest.approx((losses[0.0] + losses[1.0]) / 2, rel=1e-6)
    assert losses[1.0] * 10 < losses[0.0], losses


# -------------------------------------------------------------------------------------- bad input
def test_config_validation():
    for kw in ({"observer": "nope"}, {"calib_clips": 0}, {"calib_seconds": 0.5}, {"keep_float": "net.dec.3"},
               {"percentile": 40.0}, {"percentile": 100.5}):
        with pytest.raises(PocketVQEError):
            PTQConfig(**kw)
    for kw in ({"steps": 0}, {"lr": -1.0}, {"scenarios": ("bogus",)}, {"freeze_observers_after": -2},
               {"clip_seconds": 0.2}, {"init_batches": -1}, {"percentile": 30.0}, {"distill": 1.5},
               {"distill": -0.1}):
        with pytest.raises(PocketVQEError):
            QATConfig(**kw)
    assert QATConfig.from_dict(json.loads(json.dumps(QATConfig().to_dict()))) == QATConfig()


def test_recommended_ptq_recipes(capsys):
    """Each measured recipe is a valid PTQConfig for a known config whose keep_float modules exist; user
    choices override it; configs without a recipe get the defaults; build's CLI leaves unset choices None."""
    from pocketvqe.cli import build_parser
    from pocketvqe.models import list_configs
    assert recommended_ptq("pvqe-s16") == PTQConfig(dynamic=("net.mic", "net.far", "net.align", "net.dec"))
    assert recommended_ptq("dvqe-s16") == recommended_ptq("pvqe-s16")
    assert recommended_ptq("dvqe-s16", dynamic=()).dynamic == ()
    assert recommended_ptq("tiny") == PTQConfig()
    for name in RECIPES:
        assert name in list_configs()
        net = Enhancer(get_config(name))
        for module in recommended_ptq(name).keep_float + recommended_ptq(name).dynamic:
            net.get_submodule(module)                                      # raises if it does not exist
    with pytest.raises(PocketVQEError, match="observer"):
        recommended_ptq("pvqe-s16", observer="nope")
    args = build_parser(["build"]).parse_args(["build"])
    assert args.keep_float is None and args.observer is None and args.dynamic is None
    args = build_parser(["build"]).parse_args(["build", "--keep-float", "--observer", "minmax"])
    assert args.keep_float == [] and args.observer == "minmax"
    from pocketvqe.commands.quantize import _recipe_note
    _recipe_note("pvqe-s16", PTQConfig())                                 # quantize departs from it: a note
    assert "--observer percentile --dynamic net.mic,net.far,net.align,net.dec" in capsys.readouterr().err
    _recipe_note("pvqe-s16", recommended_ptq("pvqe-s16", calib_clips=4))
    _recipe_note("tiny", PTQConfig(observer="minmax"))
    assert capsys.readouterr().err == ""


def test_bad_calibration_and_modules(enh, calib):
    with pytest.raises(PocketVQEError, match="both keep_float"):
        PTQConfig(keep_float=("net.dec.3",), dynamic=("net.dec.3",))
    with pytest.raises(PocketVQEError, match="dynamic names unknown module"):
        quantize(enh, PTQConfig(dynamic=("net.dec.9",)), calib, progress=False)
    with pytest.raises(PocketVQEError, match="empty"):
        quantize(enh, PTQConfig(), [], progress=False)
    poisoned = CalibFrames([calib[0], (calib[1][0] * float("nan"), calib[1][1])], (0,))
    with pytest.raises(PocketVQEError, match="NaN"):
        quantize(enh, PTQConfig(), poisoned, progress=False)
    with pytest.raises(PocketVQEError, match="close names: net.dec.3"):
        quantize(enh, PTQConfig(keep_float=("net.dec.33",)), calib, progress=False)
    frozen = Enhancer(TINY).requires_grad_(False)
    with pytest.raises(PocketVQEError, match="no trainable parameters"):
        prepare_qat(frozen, QATConfig())


def test_load_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(PocketVQEError, match="does not exist"):
        load_quantized(tmp_path / "nope.pt2")
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip")
    with pytest.raises(PocketVQEError, match="not a readable"):
        load_quantized(junk)


# -------------------------------------------------------------------------------------------- CLI
def test_cli_quantize_then_enhance_personalized(tmp_path, speech_like, bn_randomizer, capsys):
    """pocketvqe quantize (PTQ, personalized tiny model) -> q.pt2 -> pocketvqe enhance --model q.pt2 --enroll."""
    from pocketvqe.audio import read_audio, write_audio
    from pocketvqe.inference import load_model
    ckpt = tmp_path / "p.pt"
    torch.manual_seed(0)
    save_checkpoint(ckpt, bn_randomizer(Enhancer(TINY_P)).eval())
    out = tmp_path / "q.pt2"
    assert main(["quantize", "--ckpt", str(ckpt), "--config", "dvqe-s16", "--out", str(out)]) == 1   # other config
    assert "holds config 'tiny-p'" in capsys.readouterr().err and not out.exists()
    assert main(["quantize", "--ckpt", str(ckpt), "--mode", "qat", "--dynamic", "net.dec.3", "--out", str(out)]) == 1
    assert "--dynamic is a PTQ choice" in capsys.readouterr().err and not out.exists()
    assert main(["quantize", "--ckpt", str(ckpt), "--mode", "ptq", "--calib-clips", "2", "--calib-seconds", "1",
                 "--out", str(out), "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["calibration"]["clips"] == 2 and side["calibration"]["frames"] == 200
    ep, meta = load_quantized(out)
    assert sum(quantized_linears(ep.module()).values()) == 8          # 6 gates + fc + speaker projection
    mic, enroll, y = tmp_path / "mic.wav", tmp_path / "enroll.wav", tmp_path / "y.wav"
    write_audio(mic, speech_like(0.5, seed=1), 16000)
    write_audio(enroll, speech_like(1.0, seed=2), 16000)
    assert main(["enhance", "--model", str(out), "--mic", str(mic), "--enroll", str(enroll), "--out", str(y)]) == 0
    x, sr = read_audio(y)
    assert sr == 16000 and len(x) == 8000 and np.isfinite(x).all()
    model = load_model(out)                                            # the same through the model loader
    spk = model.enroll(speech_like(1.0, seed=2))
    ref = model.float_enhancer.enhance(speech_like(0.5, seed=1), None, spk)
    got = model.enhance(speech_like(0.5, seed=1), None, spk)
    assert got.shape == ref.shape and sqnr_db(ref, got) > 10.0         # aligned like Enhancer.enhance


def test_keep_float_takes_containers_that_are_never_called(gm, enh, calib):
    """``net.dec`` is a ModuleList (not in any op's module stack; its children are): it must still
    keep every decoder op fp32, not silently nothing."""
    def q_nodes(g):
        return sum(1 for n in g.graph.nodes if "quantize_per" in str(n.target))
    kept = quantize(enh, PTQConfig(keep_float=("net.dec",)), calib, progress=False)
    assert q_nodes(kept) < 0.8 * q_nodes(gm)                         # the decoder is a good share of the net
    assert quantized_linears(kept) == quantized_linears(gm)        # the GRU stays int8


@pytest.mark.slow
def test_dynamic_module_keeps_int8_weights_lowers_and_matches(enh, calib, gm, test_clip, tmp_path):
    """``dynamic=("net.dec.3",)``: that block's convs (the sub-pixel conv and the skip conv reading the
    first encoder's output) get int8 weights and per-frame activation ranges, nothing else changes mode.
    The program loads (ExecuTorch 1.4.1's NHWC pass rewired the encoder's state cat without
    ``export.lower._fix_dynamic_nhwc``), matches its reference > 35 dB and stays int8-sized (~70 s)."""
    from pocketvqe.export import export_program
    from pocketvqe.export.bundle import program_fidelity
    dyn = quantize(enh, PTQConfig(calib_clips=3, calib_seconds=1.0, dynamic=("net.dec.3",)), calib, progress=False)
    assert dyn.meta["pocketvqe_quant"]["dynamic"] == ["enhancer.net.dec.3"]
    def module(n) -> str:
        return list(n.meta["nn_module_stack"].values())[-1][0]

    def per_frame(conv) -> bool:                # input dequantized with a scale computed in the graph
        dq = conv.args[0]
        return "dequantize" in str(dq.target) and isinstance(dq.args[1], torch.fx.Node)
    convs = [n for n in dyn.graph.nodes if n.target == torch.ops.aten.conv2d.default
             and module(n) != "enhancer.net"]                                  # not the CCM's fp32 DSP convs
    assert len(convs) == 17 and all("dequantize" in str(n.args[1].target) for n in convs)    # int8 weights
    assert sorted(module(n) for n in convs if per_frame(n)) == ["enhancer.net.dec.3.skip",
                                                                "enhancer.net.dec.3.subpix.conv"]
    ref, init = _float_out(enh, test_clip)
    snr_dyn, snr_static = (sqnr_db(ref, torch.cat(stream(m, test_clip, init))) for m in (dyn, gm))
    assert snr_dyn > snr_static - 1.0, (snr_dyn, snr_static)                 # per-frame ranges lose nothing
    path = save_quantized(tmp_path / "dyn.pt2", dyn, {"quant": dyn.meta["pocketvqe_quant"]}, enhancer=enh)
    prog = export_program(enh, int8_reference(enh, path))
    assert prog.delegation["undelegated_compute_ops"] == []
    fid = program_fidelity(prog, list(test_clip)[:60])
    assert fid["snr_db_vs_reference"] > 35.0, fid
    kept = export_program(enh, int8_reference(enh, save_quantized(tmp_path / "kf.pt2", q := quantize(
        enh, PTQConfig(calib_clips=3, calib_seconds=1.0, keep_float=("net.dec.3",)), calib, progress=False),
        {"quant": q.meta["pocketvqe_quant"]}, enhancer=enh)))
    assert len(prog.buffer) < len(kept.buffer)                                # int8 weights, not fp32 ones


def test_decoder_bn_fold_is_exact(enh, test_clip):
    """Folding each decoder's post-reshape BN into its sub-pixel conv leaves the float step unchanged
    (max abs 1e-5 over a real clip) and removes those BatchNorms."""
    from pocketvqe.quant.ptq import fold_decoder_bn
    folded = fold_decoder_bn(enh)
    bns = [m for m in folded.net.dec.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not bns and any(isinstance(m, torch.nn.BatchNorm2d) for m in enh.net.dec.modules())
    a, _ = _float_out(enh, test_clip)
    b, _ = _float_out(folded, test_clip)
    assert float((a - b).abs().max()) < 1e-5


def test_percentile_observer_saturates_rare_extreme_frames():
    """The percentile observer's range follows the bulk of the frames, min-max follows the outlier."""
    from pocketvqe.quant.xnnpack import _activation_observer
    g = torch.Generator().manual_seed(0)
    frames = [torch.randn(64, generator=g) for _ in range(999)] + [torch.full((64,), 100.0)]
    scales = {}
    for name in ("minmax", "percentile"):
        obs = _activation_observer(name, 99.0)(dtype=torch.qint8, quant_min=-128, quant_max=127)
        for f in frames:
            obs(f)
        scales[name] = float(obs.calculate_qparams()[0])
    assert scales["minmax"] * 255 > 100                         # covers the one 100.0 frame
    assert scales["percentile"] * 255 < 8.0                     # ~[-3.5, 3.5]: randn frame extremes
    assert scales["percentile"] * 255 > 4.0
