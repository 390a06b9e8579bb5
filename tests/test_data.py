"""Offline corpus and mixture simulator, on real Debian packages and real audio.

One small corpus (asterisk-en capped at 120 prompts, espeak-ng voices, 12 simulated rooms,
synthetic noise) is built once per module (~15 s); the rest runs on it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pocketvqe.cli import main
from pocketvqe.data import (
    SCENARIOS,
    CorpusSizes,
    SimConfig,
    Simulator,
    collate_mixtures,
    load_eval_set,
    load_manifest,
    make_eval_set,
    prepare_corpus,
)
from pocketvqe.data.build import BuildContext
from pocketvqe.data.debs import fetch_debs, find_tool, write_private_apt_config
from pocketvqe.data.manifest import check_disjoint, split_by_key
from pocketvqe.data.mixing import ratio_db
from pocketvqe.data.rooms import direct_index, early_part, sample_room, simulate_rirs
from pocketvqe.data.sources_debian import decode_g722, dep5_licenses, license_of
from pocketvqe.errors import PocketVQEError

SR = 16000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    prepare_corpus(root, quick=True, progress=False)
    return root


def flatness(x: np.ndarray) -> float:
    """Mean spectral flatness of the loudest half of 32 ms frames (decoded prompts <= 0.05, white noise ~0.56)."""
    n = len(x) // 512 * 512
    frames = x[:n].reshape(-1, 512) * np.hanning(512)
    p = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12
    loud = p.sum(1) >= np.median(p.sum(1))
    return float(np.mean(np.exp(np.mean(np.log(p[loud]), 1)) / np.mean(p[loud], 1)))


# ---------------------------------------------------------------------------------------------- corpus
def test_manifest_is_complete_and_speaker_disjoint(corpus):
    m = load_manifest(corpus)
    for split in ("train", "valid", "test"):
        for kind in ("speech", "noise", "rir"):
            assert m.select(kind, split), f"no {kind} in {split}"
    for e in m.entries:
        info = sf.info(str(m.path_of(e)))
        assert info.samplerate == SR and e.sample_rate == SR
        assert abs(info.frames / SR - e.duration) < 1e-3
        assert e.source and e.license
        assert info.channels == (3 if e.kind == "rir" else 1)
    check_disjoint(m)
    train, test = m.speakers("train"), m.speakers("test")
    assert test and not (test & train), "test voices must never be heard in training"
    assert "asterisk:Allison" in train
    assert {e.source for e in m.entries} == {"asterisk-core-sounds-en-g722", "espeak-ng", "pyroomacoustics",
                                             "synthetic"}


def test_g722_prompts_decode_to_speech(corpus):
    m = load_manifest(corpus)
    ast = [e for e in m.select("speech") if e.source.startswith("asterisk") and e.duration > 1.5][:10]
    white = [e for e in m.select("noise") if e.meta.get("type") == "white"][0]
    assert len(ast) == 10
    for e in ast:
        x, sr = sf.read(str(m.path_of(e)), dtype="float32")
        assert sr == SR and 20 * np.log10(np.sqrt(np.mean(x ** 2))) > -45, e.path
        assert flatness(x) < 0.1, f"{e.path} does not look like speech (wrong G.722 decoding?)"  # all 1269: <= 0.045
    xw, _ = sf.read(str(m.path_of(white)), dtype="float32")
    assert flatness(xw) > 0.4        # the measure tells noise from speech


def test_decode_g722_length_rule(corpus, tmp_path):
    """ffmpeg decodes raw G.722 (64 kbit/s) to exactly 2 samples per byte at 16 kHz."""
    deb = next((corpus / "_cache" / "debs").glob("asterisk-core-sounds-en-g722_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path / "x")], check=True)
    src = sorted((tmp_path / "x").rglob("*.g722"))[:3]
    outs = [tmp_path / f"{i}.wav" for i in range(3)]
    ctx = BuildContext(root=tmp_path, name="t", out=tmp_path, cache=corpus / "_cache", sizes=CorpusSizes.quick(),
                       progress=False)
    decode_g722(src, outs, ctx)
    for s, o in zip(src, outs):
        info = sf.info(str(o))
        assert info.samplerate == SR and info.frames == 2 * s.stat().st_size


def test_prepare_again_is_a_noop(corpus):
    files = [corpus / "manifest.json", *corpus.glob("*/source.json")]
    before = {f: f.stat().st_mtime_ns for f in files}
    t = time.perf_counter()
    prepare_corpus(corpus, quick=True, progress=False)
    assert time.perf_counter() - t < 2.0
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert not list(corpus.glob(".partial-*"))


def test_rooms_pool(corpus):
    m = load_manifest(corpus)
    rooms = m.select("rir")
    nominal = np.array([e.meta["rt60"] for e in rooms])
    measured = np.array([e.meta["rt60_measured"] for e in rooms], dtype=float)
    assert np.all((nominal >= 0.1) & (nominal <= 1.0))
    ok = np.isfinite(measured)
    assert ok.sum() >= len(rooms) - 2
    # Sabine is only an estimate of the image-source room: within a factor 2, and ordered alike
    assert np.all((measured[ok] > 0.5 * nominal[ok]) & (measured[ok] < 2.0 * nominal[ok]))
    assert np.corrcoef(nominal[ok], measured[ok])[0, 1] > 0.7
    h, _ = sf.read(str(m.path_of(rooms[0])), dtype="float32", always_2d=True)
    e = early_part(h[:, 0])
    d = direct_index(h[:, 0])
    assert np.all(e[d + int(0.05 * SR):] == 0) and np.array_equal(e[:d + 1], h[:d + 1, 0])


def test_room_simulation_is_fast_enough():
    spec = sample_room(np.random.default_rng(3), (1.0, 1.0))
    t = time.perf_counter()
    h = simulate_rirs(spec)
    assert time.perf_counter() - t < 5.0       # measured ~0.3-1.3 s on a 2-core machine
    assert h.shape[0] == 3 and h.shape[1] > 0.5 * SR


# ------------------------------------------------------------------------------------------- simulator
def test_simulator_is_deterministic(corpus):
    a = Simulator(corpus, "train", SimConfig(clip_seconds=3.0), seed=7)
    b = Simulator(corpus, "train", SimConfig(clip_seconds=3.0), seed=7)
    for i in (0, 5):
        ma, mb = a[i], b[i]
        for k in ("mic", "far", "target", "enroll"):
            assert np.array_equal(getattr(ma, k), getattr(mb, k))
        assert ma.meta == mb.meta
    assert not np.array_equal(a[0].mic, Simulator(corpus, "train", SimConfig(clip_seconds=3.0), seed=8)[0].mic)
    b.set_epoch(1)
    assert not np.array_equal(a[0].mic, b[0].mic)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_contract(corpus, scenario):
    cfg = SimConfig(clip_seconds=4.0, p_clip=0.0, personalized=True)
    sim = Simulator(corpus, "train", cfg, seed=1, keep_parts=True)
    for i in range(3):
        m = sim.make(i, scenario=scenario)
        p, meta = m.parts, m.meta
        n = 4 * SR
        for k in ("mic", "far", "target"):
            assert getattr(m, k).dtype == np.float32 and getattr(m, k).shape == (n,)
        assert np.allclose(m.mic, sum(p.values()), atol=1e-5)
        assert np.max(np.abs(m.mic)) <= 0.99 + 1e-6
        ref = p["echo"] if scenario == "echo_fe_st" else p["speech"]
        assert abs(ratio_db(ref, p["noise"], b_active=False) - meta["snr_db"]) < 0.05
        assert -5 <= meta["snr_db"] <= 30
        assert 5.0 <= len(m.enroll) / SR <= 10.0 and np.any(m.enroll)
        assert not meta["enroll_overlap"], "enrollment must use other utterances than the clip"
        has_far = scenario in ("echo_fe_st", "double_talk")
        assert np.any(m.far) == has_far
        if has_far:
            assert 0 <= meta["delay_ms"] <= 500 and meta["far_speaker"] != meta["speaker"]
        if scenario == "echo_fe_st":
            assert not np.any(m.target) and not np.any(p["speech"])
        else:
            assert np.any(m.target)
        if scenario == "noise":
            assert np.allclose(m.target, p["speech"], atol=1e-7)
        if scenario == "reverb":
            assert meta["rt60"] is not None
            late = p["speech"] - m.target             # the reverberant tail the model must remove
            assert 0 < np.sum(late ** 2) < np.sum(p["speech"] ** 2)
        if scenario == "double_talk":
            assert abs(ratio_db(p["speech"], p["echo"]) - meta["ser_db"]) < 0.05 and -10 <= meta["ser_db"] <= 20
        if scenario == "interferer":
            assert abs(ratio_db(p["speech"], p["interferer"]) - meta["sir_db"]) < 0.05 and 0 <= meta["sir_db"] <= 20
            assert meta["interferer_speaker"] != meta["speaker"]
            c = abs(np.dot(m.target, p["interferer"])) / (np.linalg.norm(m.target) * np.linalg.norm(p["interferer"]))
            assert c < 0.3, "the target must not contain the interfering talker"


def test_echo_delay_matches_meta(corpus):
    sim = Simulator(corpus, "train", SimConfig(clip_seconds=4.0, p_nonlinear=0.0, p_clip=0.0), seed=2,
                    keep_parts=True)
    for i in range(4):
        m = sim.make(i, scenario="echo_fe_st")
        echo, far = m.parts["echo"], m.far
        xc = np.fft.irfft(np.fft.rfft(echo, 2 * len(far)) * np.conj(np.fft.rfft(far, 2 * len(far))))
        lag = int(np.argmax(np.abs(xc[: len(far)])))
        # the echo path adds < 10 ms (loudspeaker 5-50 cm away, pyroomacoustics' fractional-delay filter)
        assert 0 <= lag / SR * 1000 - m.meta["delay_ms"] < 10, (lag, m.meta["delay_ms"])


def test_interferer_share_and_scenario_mix(corpus):
    pers = Simulator(corpus, "train", SimConfig(personalized=True), seed=0, length=4000)
    share = np.mean([pers.scenario_of(i) == "interferer" for i in range(4000)])
    assert abs(share - 0.3) < 0.03                       # binomial sd 0.007
    plain = Simulator(corpus, "train", SimConfig(), seed=0, length=2000)
    seen = [plain.scenario_of(i) for i in range(2000)]
    assert "interferer" not in seen and set(seen) == set(SCENARIOS) - {"interferer"}
    assert plain[3].scenario == plain.scenario_of(3)


def test_tts_voices_get_their_share_of_talkers():
    from pocketvqe.data import CorpusEntry
    from pocketvqe.data.simulate import speaker_weights
    def mk(spk, src, d):
        return CorpusEntry(path=f"{spk}.wav", kind="speech", source=src, license="x", duration=d, split="train",
                           speaker=spk)
    speech = {"real": [mk("real", "asterisk-core-sounds-en-g722", 3600.0)],
              **{f"tts{k}": [mk(f"tts{k}", "espeak-ng", 400.0)] for k in range(9)}}
    w = speaker_weights(speech, 0.25)
    assert abs(sum(v for s, v in w.items() if s.startswith("tts")) / sum(w.values()) - 0.25) < 1e-6
    assert speaker_weights({k: v for k, v in speech.items() if k != "real"}, 0.25)["tts0"] == 20.0


def test_dataloader_batches_and_workers(corpus):
    import torch
    sim = Simulator(corpus, "valid", SimConfig(clip_seconds=2.0), seed=3, length=6)
    one = next(iter(torch.utils.data.DataLoader(sim, batch_size=3, collate_fn=collate_mixtures)))
    assert one["mic"].shape == (3, 2 * SR) and one["mic"].dtype == torch.float32
    assert one["far"].shape == one["target"].shape == (3, 2 * SR)
    assert one["enroll"].shape[1] == int(one["enroll_lengths"].max()) and len(one["meta"]) == 3
    two = next(iter(torch.utils.data.DataLoader(sim, batch_size=3, collate_fn=collate_mixtures, num_workers=2)))
    assert torch.equal(one["mic"], two["mic"]) and torch.equal(one["enroll"], two["enroll"])


def test_eval_set_roundtrip(corpus, tmp_path):
    out = tmp_path / "eval"
    cfg = SimConfig(clip_seconds=2.0, personalized=True)
    clips = make_eval_set(corpus, "test", n_per_scenario=1, seed=5, config=cfg, out_dir=out, progress=False)
    assert [c.scenario for c in clips] == list(SCENARIOS)
    again = load_eval_set(out)
    for a, b in zip(clips, again):
        for k in ("mic", "far", "target", "enroll"):
            assert np.array_equal(getattr(a, k), getattr(b, k))
        assert json.loads(json.dumps(a.meta)) == b.meta
    stamp = (out / "eval_set.json").stat().st_mtime_ns
    make_eval_set(corpus, "test", n_per_scenario=1, seed=5, config=cfg, out_dir=out, progress=False)
    assert (out / "eval_set.json").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]
    test_speakers = load_manifest(corpus).speakers("test")
    assert all(c.meta["speaker"] in test_speakers for c in clips)


# ------------------------------------------------------------------------------------- own corpora, CLI
def test_user_folders(corpus, tmp_path):
    """A LibriSpeech-like tree at 8 and 44.1 kHz, a noise folder and real RIR files, scanned in place."""
    from pocketvqe.audio import resample
    m = load_manifest(corpus)
    speech = m.select("speech")
    by_spk: dict[str, list] = {}
    for e in speech:
        by_spk.setdefault(e.speaker, []).append(e)
    lib = tmp_path / "LibriSpeech"
    for k, (_, es) in enumerate(sorted(by_spk.items())[:6]):
        sr = 8000 if k % 2 else 44100
        for j, e in enumerate(es[:3]):
            x, _ = sf.read(str(m.path_of(e)), dtype="float32")
            f = lib / str(100 + k) / "7" / f"{100 + k}-7-{j:04d}.flac"
            f.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(f), resample(x, SR, sr), sr)
    noise = tmp_path / "noise"
    noise.mkdir()
    for e in m.select("noise")[:5]:
        shutil.copy(m.path_of(e), noise / Path(e.path).name.replace("/", "_"))
    rir = tmp_path / "rirs"
    rir.mkdir()
    for k, e in enumerate(m.select("rir")):
        shutil.copy(m.path_of(e), rir / f"r{k}.wav")
    root = tmp_path / "own"
    path = prepare_corpus(root, speech_dirs=[lib], noise_dirs=[noise], rir_dirs=[rir], progress=False)
    own = load_manifest(path)
    assert own.sources == ["synthetic", "user-speech", "user-noise", "user-rir"]
    assert {e.speaker for e in own.select("speech")} == {f"LibriSpeech:{100 + k}" for k in range(6)}
    assert all(Path(e.path).is_absolute() for e in own.select("speech"))
    check_disjoint(own)
    assert own.speakers("test") and own.speakers("valid")
    clip = Simulator(own, "train", SimConfig(clip_seconds=2.0), seed=0).make(0, scenario="double_talk")
    assert clip.mic.shape == (2 * SR,) and np.any(clip.far)
    t = time.perf_counter()
    prepare_corpus(root, speech_dirs=[lib], noise_dirs=[noise], rir_dirs=[rir], progress=False)
    assert time.perf_counter() - t < 2.0


def test_cli(corpus, tmp_path, capsys):
    assert main(["data", "info", "--root", str(corpus)]) == 0
    out = capsys.readouterr().out
    assert "speech" in out and "test" in out
    assert main(["data", "prepare", "--root", str(tmp_path / "c"), "--speech", str(tmp_path / "missing")]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert main(["data", "prepare", "--root", str(tmp_path / "c"), "--sources", "asterisk-xx"]) == 1
    assert "unknown corpus source" in capsys.readouterr().err
    assert main(["data", "eval-set", "--root", str(corpus), "--out", str(tmp_path / "ev"), "--n", "1",
                 "--clip-seconds", "2", "--no-echo"]) == 0
    assert sorted({p.name.split("_", 1)[1] for p in (tmp_path / "ev").iterdir() if p.is_dir()}) == ["noise", "reverb"]


def test_config_errors_name_the_fix(corpus, tmp_path):
    with pytest.raises(PocketVQEError, match="low <= high"):
        SimConfig(snr_db=(10.0, -5.0))
    with pytest.raises(PocketVQEError, match="turn at least one scenario on"):
        SimConfig(p_noise=0, p_reverb=0, p_echo_fe_st=0, p_echo_ne_st=0, p_double_talk=0)
    with pytest.raises(PocketVQEError, match="16 kHz"):
        SimConfig(sample_rate=48000)
    with pytest.raises(PocketVQEError):
        CorpusSizes(rooms=(0, 1, 1))
    with pytest.raises(PocketVQEError, match="pocketvqe data prepare"):
        Simulator(tmp_path, "train")
    only_rooms = load_manifest(corpus)
    only_rooms.entries = only_rooms.select("rir") + only_rooms.select("noise")
    with pytest.raises(PocketVQEError, match="no speaker"):
        Simulator(only_rooms, "train")


def test_split_by_key_is_stable_and_covers_splits():
    keys = [f"spk{i}" for i in range(40)]
    a, b = split_by_key(keys), split_by_key(list(reversed(keys)))
    assert a == b and set(a.values()) == {"train", "valid", "test"}
    assert sum(v == "train" for v in a.values()) == 36
    assert set(split_by_key(["a", "b", "c"]).values()) == {"train", "valid", "test"}


def test_dep5_license_rule(tmp_path):
    f = tmp_path / "copyright"
    f.write_text("Format: x\n\nFiles: *\nLicense: CC0\n\nFiles: etc/samples/loop_amen.flac\n"
                 " etc/samples/loop_garzul.flac\nLicense: CC-BY-SA-3.0\n comment\n")
    paras = dep5_licenses(f)
    assert license_of("etc/samples/loop_garzul.flac", paras, "?") == "CC-BY-SA-3.0"
    assert license_of("etc/samples/bd_808.flac", paras, "?") == "CC0"


# ------------------------------------------------------------------------------------ Debian, no root
def test_tools_run_from_extracted_debs(corpus, tmp_path):
    """espeak-ng from `apt-get download` + `dpkg-deb -x` (not the installed one) speaks."""
    tool = find_tool("espeak-ng", tmp_path, allow_system=False)
    assert tool.extracted and str(tmp_path) in tool.argv[0]
    tool.run(["-v", "en-us", "-w", str(tmp_path / "a.wav"), "Testing the extracted voice."], what="espeak-ng")
    x, sr = sf.read(str(tmp_path / "a.wav"))
    assert len(x) / sr > 1.0 and np.max(np.abs(x)) > 0.05


def test_private_apt_config_downloads_without_system_lists(tmp_path):
    """The fallback for machines whose apt lists are missing: own sources (copied), lists and cache."""
    opts = write_private_apt_config(tmp_path / "apt")
    for f in sorted((tmp_path / "apt" / "sources.list.d").iterdir()):
        assert f.read_bytes() == Path("/etc/apt/sources.list.d", f.name).read_bytes()
    assert any(str(tmp_path) in o for o in opts)
    debs = fetch_debs(["alsa-utils"], tmp_path / "debs", apt_dir=tmp_path / "apt", private=True)
    assert debs[0].name.startswith("alsa-utils_") and debs[0].stat().st_size > 100_000
    assert any((tmp_path / "apt" / "lists").glob("*Packages*"))


@pytest.mark.slow
def test_more_sources_build(tmp_path):
    """pocketsphinx, alsa, sonic-pi (capped), flite, festival and piper with tiny sizes; speaker splits fixed."""
    sources = ["pocketsphinx", "alsa", "sonic-pi", "flite", "piper", "rooms", "synthetic"]
    if shutil.which("text2wave"):
        sources.append("festival")
    sizes = CorpusSizes(tts_utterances=2, piper_utterances=2, rooms=(1, 1, 1), synthetic_seconds=2.0, max_files=6)
    m = load_manifest(prepare_corpus(tmp_path, sources=sources, sizes=sizes, progress=False))
    spk = {e.speaker: e.split for e in m.select("speech")}
    assert spk["pocketsphinx:librivox"] == "test" and spk["cmu:rms"] == "test" and spk["piper:joe"] == "train"
    if "festival" in sources:
        assert spk["cmu:ked"] == "valid"
        assert {e.source for e in m.select("speech") if e.speaker == "cmu:kal"} == {"flite", "festival"}
    sonic = [e for e in m.select("noise") if e.source == "sonic-pi-samples"]
    assert 1 <= len(sonic) <= 6 and all(e.license for e in sonic)
    check_disjoint(m)


def test_preflight_names_every_missing_tool(monkeypatch):
    from pocketvqe.data import corpus as corpus_mod
    monkeypatch.setattr(corpus_mod.shutil, "which", lambda name: None)
    monkeypatch.setattr(corpus_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PocketVQEError) as err:
        corpus_mod.preflight(["asterisk-en", "festival", "piper", "rooms"])
    msg = str(err.value)
    for fix in ("apt-get install ffmpeg", "festvox-kallpc16k", "pip install piper-tts", "pip install pyroomacoustics",
                "--sources"):
        assert fix in msg
    corpus_mod.preflight(["synthetic"])      # needs nothing
