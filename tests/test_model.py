"""The model family: sizes, write-once streaming (frame by frame == offline), enrollment, checkpoints."""
import dataclasses

import numpy as np
import pytest
import torch

from pocketvqe.errors import PocketVQEError
from pocketvqe.models import get_config, list_configs, load_checkpoint, save_checkpoint
from pocketvqe.models.profile import describe

ALL = list_configs()


def test_registry_has_the_six_configs_and_ns_only():
    assert {"dvqe-s16", "dvqe16", "dvqe-s24", "dvqe24", "pvqe-s16", "pvqe16", "ns-s16"} <= set(ALL)
    with pytest.raises(PocketVQEError, match="unknown config"):
        get_config("dvqe99")


@pytest.mark.parametrize("name,target", [("dvqe24", 7.5e6), ("dvqe-s24", 0.59e6)])
def test_paper_parameter_counts_within_10_percent(name, target):
    params = describe(get_config(name))["params"]
    assert abs(params - target) / target < 0.10, params


def test_config_validation():
    cfg = get_config("dvqe-s16")
    with pytest.raises(PocketVQEError, match="27 CCM"):
        dataclasses.replace(cfg, dec_channels=(40, 32, 32, 16))
    with pytest.raises(PocketVQEError, match="multiple of hop"):
        dataclasses.replace(cfg, hop=150)
    assert get_config("ns-s16").has_far is False


def test_ns_only_has_no_far_end_branch(make_enhancer):
    enh = make_enhancer("ns-s16")
    assert len(enh.net.far) == 0 and enh.net.align is None
    assert not any(k.startswith(("net.far", "net.align")) for k in enh.state_dict())
    assert enh.init_state(1).far_stft is None


def _signals(cfg, seconds, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * cfg.sample_rate) // cfg.hop * cfg.hop
    mic = 0.1 * torch.randn(1, n, generator=g)
    far = 0.1 * torch.randn(1, n, generator=g) if cfg.has_far else None
    return mic, far


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("with_far", [True, False])
def test_streaming_equals_offline(name, with_far, make_enhancer):
    """3 s of random signal, hop by hop through the same module, against one offline call."""
    enh = make_enhancer(name)
    cfg = enh.cfg
    if not with_far and not cfg.has_far and name != "ns-s16":
        pytest.skip("covered")
    mic, far = _signals(cfg, 3.0)
    if cfg.has_far and not with_far:
        far = torch.zeros_like(far)                        # near-end only: far-end line silent
    speaker = None
    if cfg.personalized:
        enroll, _ = _signals(cfg, 1.0, seed=1)
        speaker = enh.enroll(enroll[0].numpy())[None]
    with torch.no_grad():
        y_off, s_off = enh(mic, far, enh.init_state(1), speaker)
        state, ys = enh.init_state(1), []
        for t in range(mic.shape[1] // cfg.hop):
            sl = slice(t * cfg.hop, (t + 1) * cfg.hop)
            y, state = enh(mic[:, sl], far[:, sl] if far is not None else None, state, speaker)
            ys.append(y)
    assert (torch.cat(ys, 1) - y_off).abs().max().item() < 1e-5
    assert (state.net.gru - s_off.net.gru).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", ["pvqe-s16", "pvqe16"])
def test_enrollment_streaming_equals_offline_and_changes_output(name, make_enhancer):
    enh = make_enhancer(name)
    cfg = enh.cfg
    enroll, _ = _signals(cfg, 1.0, seed=2)
    with torch.no_grad():
        offline = enh.enroll(enroll[0].numpy())
        state, feats = enh.init_state(1), []
        for t in range(enroll.shape[1] // cfg.hop):
            f, state = enh.embed_frames(enroll[:, t * cfg.hop:(t + 1) * cfg.hop], state)
            feats.append(f)
    streamed = torch.cat(feats, 1)[0].mean(0)
    assert offline.shape == (enh.speaker_dim,)
    assert (streamed - offline).abs().max().item() < 1e-5
    mic, far = _signals(cfg, 0.5)
    y1 = enh.enhance(mic[0].numpy(), far[0].numpy(), offline)
    y0 = enh.enhance(mic[0].numpy(), far[0].numpy(), torch.zeros_like(offline))
    assert np.abs(y1 - y0).max() > 1e-4                   # the embedding conditions the output


def test_enhance_output_is_aligned_and_same_length(make_enhancer, speech_like):
    """With an identity CCM (centre tap = 1) the model must return its input, aligned."""
    enh = make_enhancer("dvqe-s16")
    last = enh.net.dec[-1].subpix.conv
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        # The sub-pixel conv interleaves channel c of half s into bin 2f + s: the centre tap of basis 0
        # is output channel 1, so both halves' channel 1 must be one.
        last.bias[1] = 1.0
        last.bias[27 + 1] = 1.0
    x = speech_like(1.23)
    y = enh.enhance(x, np.zeros_like(x))
    assert y.shape == x.shape
    assert np.abs(y - x).max() < 1e-4


@pytest.mark.parametrize("name", ALL)
def test_checkpoint_round_trip(name, make_enhancer, tmp_path):
    enh = make_enhancer(name, seed=3)
    path = save_checkpoint(tmp_path / f"{name}.pt", enh, meta={"note": "test"})
    assert (tmp_path / f"{name}.json").exists()                # resolved config beside it
    loaded, ckpt = load_checkpoint(path, expect=name)
    assert loaded.cfg == enh.cfg and ckpt["meta"]["note"] == "test"
    for k, v in enh.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    mic, far = _signals(enh.cfg, 0.2)
    spk = torch.randn(1, enh.speaker_dim) if enh.cfg.personalized else None
    with torch.no_grad():
        assert torch.equal(enh(mic, far, enh.init_state(1), spk)[0], loaded(mic, far, loaded.init_state(1), spk)[0])


def test_checkpoint_errors(make_enhancer, tmp_path):
    enh = make_enhancer("dvqe-s16")
    path = save_checkpoint(tmp_path / "m.pt", enh)
    with pytest.raises(PocketVQEError, match="holds config 'dvqe-s16', not 'pvqe-s16'"):
        load_checkpoint(path, expect="pvqe-s16")
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PocketVQEError, match="corrupt or truncated"):
        load_checkpoint(truncated)
    empty = tmp_path / "e.pt"
    empty.write_bytes(b"")
    with pytest.raises(PocketVQEError, match="empty"):
        load_checkpoint(empty)
    with pytest.raises(PocketVQEError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    # a state dict that does not fit its declared config (e.g. written by another definition)
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["gru_hidden"] = 100
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(PocketVQEError, match="does not match config"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"hello": 1}, tmp_path / "foreign.pt")
    with pytest.raises(PocketVQEError, match="not a pocketvqe checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_separate_speaker_model_variant(make_enhancer, speech_like):
    """pvqe-s16-dvec: conditioned on resemblyzer d-vectors (256-d, unit norm) instead of its own GRU."""
    pytest.importorskip("resemblyzer")
    enh = make_enhancer("pvqe-s16-dvec")
    assert enh.speaker_dim == 256
    a = enh.enroll(speech_like(3.0, seed=1))
    b = enh.enroll(np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.05)
    assert a.shape == (256,) and abs(float(a.norm()) - 1.0) < 1e-4
    assert float(a @ b) < 0.99                           # different voices, different d-vectors
    with pytest.raises(ValueError, match="no internal speaker embedding"):
        enh.embed_frames(torch.zeros(1, 160), enh.init_state(1))
    mic = speech_like(0.5, seed=3)
    y1, y0 = enh.enhance(mic, mic, a), enh.enhance(mic, mic, torch.zeros_like(a))
    assert np.abs(y1 - y0).max() > 1e-4


def test_enhance_in_chunks_equals_one_pass(make_enhancer, speech_like):
    """`enhance` runs long files in chunks with the state carried over (flat memory): any chunk length
    gives the one-pass output. The mutation: restarting the state at each chunk is caught."""
    enh = make_enhancer("dvqe-s16")
    mic, far = speech_like(1.3), speech_like(1.3, seed=2)
    one = enh.enhance(mic, far, chunk_frames=10 ** 6)
    hops = []
    for chunk in (1, 7, 50):
        got = enh.enhance(mic, far, chunk_frames=chunk, progress=hops.append)
        assert got.shape == one.shape and np.abs(got - one).max() < 1e-5, chunk
    assert sum(hops[-3:]) > 0 and all(h <= 50 for h in hops)
    y = []                                          # the mutation: each chunk from a fresh state
    for at in range(0, len(mic) - 160 * 7 + 1, 160 * 7):
        y.append(enh.enhance(mic[at:at + 160 * 7], far[at:at + 160 * 7], chunk_frames=7))
    assert np.abs(np.concatenate(y) - one[:len(np.concatenate(y))]).max() > 1e-3


def test_a_clipping_burst_does_not_stay_in_the_state():
    """0.5 s of full-scale clipping before speech: the trained model's output on the speech that follows
    is within 1 dB of its output on the same clip without the burst (the state recovers)."""
    from pathlib import Path

    import soundfile as sf
    ckpt = Path(__file__).resolve().parent.parent / "models" / "checkpoints" / "dvqe-s16.pt"
    enh, _ = load_checkpoint(ckpt)
    speech = sf.read("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
                     dtype="float32")[0][:4 * 16000]
    lead = np.zeros(16000, np.float32)
    burst = lead.copy()
    burst[:8000] = np.sign(np.random.default_rng(0).standard_normal(8000)).astype(np.float32)   # 0.5 s at 0 dBFS
    quiet = np.zeros(2 * 16000, np.float32)
    clean = enh.enhance(np.concatenate([lead, quiet, speech]), None if not enh.cfg.has_far else np.zeros(7 * 16000, np.float32))
    hit = enh.enhance(np.concatenate([burst, quiet, speech]), None if not enh.cfg.has_far else np.zeros(7 * 16000, np.float32))
    tail = slice(3 * 16000, None)                                       # the speech after the burst
    level = lambda y: 10 * np.log10(np.mean(y[tail].astype(np.float64) ** 2))   # noqa: E731
    assert abs(level(hit) - level(clean)) < 1.0, (level(hit), level(clean))
