"""`pocketvqe eval` / `pocketvqe compare` and the evaluation core (pocketvqe.evaluate) on a quick corpus."""
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from pocketvqe.cli import main
from pocketvqe.data import prepare_corpus
from pocketvqe.errors import PocketVQEError
from pocketvqe.evaluate import (
    BASELINE,
    OVERALL,
    IdentityProcessor,
    ModelProcessor,
    PeerProcessor,
    aggregate,
    alignment_lag_ms,
    load_clips,
    load_processor,
    markdown_table,
    metric_groups,
    run_processors,
)
from pocketvqe.models import get_config, init_checkpoint, save_checkpoint
from pocketvqe.peers import available_peers

FAST = ["pesq", "stoi", "si_sdr", "tsos", "erle", "interferer"]   # no ONNX judges
PEERS_OK = {s.name for s in available_peers() if s.available}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Like the CLI (--threads 1): torch's default threads fight the other tests for the cores."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    prepare_corpus(root, quick=True, progress=False)
    return root


@pytest.fixture(scope="module")
def clips(corpus):
    """One clip of each of the six scenarios (cached under the corpus root)."""
    return load_clips(corpus, "test", n_per_scenario=1, progress=False)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("ckpt")
    return {name: save_checkpoint(d / f"{name}.pt", init_checkpoint(get_config(name)))
            for name in ("dvqe-s16", "pvqe-s16")}


def by_scenario(clips, *names):
    return [c for c in clips if c.scenario in names]


def same(a, b, tol=1e-6) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol * max(1.0, abs(b))


# ---------------------------------------------------------------------------------------------- the set
def test_eval_set_is_cached_and_has_the_parts_metrics_need(corpus, clips):
    assert [c.scenario for c in clips] == ["noise", "reverb", "echo_fe_st", "echo_ne_st", "double_talk", "interferer"]
    assert (corpus / "eval_sets" / "test-n1-seed20240601" / "eval_set.json").exists()
    for c in clips:
        if c.scenario in ("echo_fe_st", "double_talk"):
            assert c.parts is not None and np.any(c.parts["echo"])
        if c.scenario == "interferer":
            assert np.any(c.parts["interferer"])
    again = load_clips(corpus, "test", n_per_scenario=1, scenarios=["double_talk"], progress=False)  # from disk
    assert len(again) == 1 and np.array_equal(again[0].mic, clips[4].mic)
    assert np.array_equal(again[0].parts["echo"], clips[4].parts["echo"])
    with pytest.raises(PocketVQEError, match="unknown scenario"):
        load_clips(corpus, "test", n_per_scenario=1, scenarios=["nosie"], progress=False)


def test_metric_groups_follow_the_scenario(clips):
    g = {c.scenario: metric_groups(c) for c in clips}
    assert "aecmos" not in g["noise"] and "erle" not in g["noise"] and "pdnsmos" not in g["noise"]
    assert {"aecmos", "erle"} <= set(g["echo_fe_st"]) and {"aecmos", "erle"} <= set(g["double_talk"])
    assert "aecmos" in g["echo_ne_st"] and "erle" not in g["echo_ne_st"]      # far end silent: talk type 'nst'
    assert {"interferer", "pdnsmos"} <= set(g["interferer"])
    assert "pdnsmos" in metric_groups(clips[0], personalized=True)
    assert metric_groups(clips[2], which=["si_sdr", "interferer"]) == ["si_sdr"]   # no interferer in an echo clip
    with pytest.raises(PocketVQEError, match="unknown metric group"):
        metric_groups(clips[0], which=["pesq_wb"])


# ---------------------------------------------------------------------------------------------- processors
def test_load_processor_dispatch_and_errors(tmp_path, checkpoints):
    assert isinstance(load_processor(checkpoints["dvqe-s16"]), ModelProcessor)
    assert load_processor(checkpoints["dvqe-s16"], name="model").name == "model"
    assert isinstance(load_processor("identity"), IdentityProcessor)
    if "speex_ns" in PEERS_OK:
        assert isinstance(load_processor("speex_ns"), PeerProcessor)
    with pytest.raises(PocketVQEError, match="'.onnx' files are not supported"):
        load_processor(tmp_path / "model.onnx")
    with pytest.raises(PocketVQEError, match="does not exist"):
        load_processor(tmp_path / "missing.pt")
    with pytest.raises(PocketVQEError, match="no file suffix"):
        load_processor("not_a_peer")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(PocketVQEError, match="corrupt"):
        load_processor(bad)


def test_identity_scores_equal_the_input_baseline(clips):
    picked = by_scenario(clips, "noise", "double_talk", "interferer")
    ev = run_processors(picked, [IdentityProcessor()], which=FAST, progress=False)
    for r in ev.results:
        own = {k: v for k, v in r.metrics.items() if not k.startswith("input_")}
        assert own and all(same(v, r.metrics["input_" + k]) for k, v in own.items()), r.metrics
        assert r.lag_ms == 0.0
    agg = aggregate(ev.results)
    for scen in ("noise", "double_talk", "interferer", OVERALL):
        base, ident = agg[scen][BASELINE], agg[scen]["identity"]
        assert all(same(ident[k], v) for k, v in base.items() if k != "n_clips"), scen
    assert not math.isnan(agg["double_talk"]["identity"]["erle_db"])
    assert not math.isnan(agg["interferer"]["identity"]["interferer_suppression_db"])


def test_outputs_of_the_wrong_shape_or_nan_are_refused(clips):
    class Short:
        name = "short"
        def process(self, m):
            return m.mic[:-1]

    class Broken:
        name = "broken"
        def process(self, m):
            return np.full_like(m.mic, np.nan)

    for proc, msg in ((Short(), "same length"), (Broken(), "NaN")):
        with pytest.raises(PocketVQEError, match=msg):
            run_processors(clips[:1], [proc], which=["si_sdr"], progress=False, warmup=False)
    with pytest.raises(PocketVQEError, match="unique"):
        run_processors(clips[:1], [IdentityProcessor("x"), IdentityProcessor("x")], progress=False)


def test_personalized_checkpoint_enrolls_and_turns_on_pdnsmos(clips, checkpoints):
    proc = ModelProcessor(checkpoints["pvqe-s16"])
    assert proc.personalized
    clip = by_scenario(clips, "interferer")[0]
    y = proc.process(clip)
    assert y.shape == clip.mic.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
    assert proc.last_compute_s > 0
    same_without_enroll = dataclasses.replace(clip, enroll=np.zeros(16000, np.float32))
    assert not np.allclose(proc.process(same_without_enroll), y)        # the speaker embedding matters
    ev = run_processors([clip], [proc], which=["si_sdr", "tsos"], progress=False)
    assert ev.personalized and ev.results[0].metrics.keys() >= {"si_sdr", "tsos", "input_si_sdr"}


def test_lag_detector():
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    assert alignment_lag_ms(np.r_[np.zeros(80, np.float32), x[:-80]], x) == 5.0
    assert alignment_lag_ms(np.zeros_like(x), x) is None


# ---------------------------------------------------------------------------------------------- CLI
def test_eval_cli_end_to_end(corpus, clips, checkpoints, tmp_path, capsys):
    """Every metric group on one clip of each scenario, through `pocketvqe eval`."""
    out, md = tmp_path / "eval.json", tmp_path / "eval.md"
    rc = main(["eval", "--model", str(checkpoints["dvqe-s16"]), "--data", str(corpus), "--n-per-scenario", "1",
               "--json", str(out), "--md", str(md), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| noise | input |" in printed and "| noise | model |" in printed
    rep = json.loads(out.read_text())
    assert rep["command"] == "eval" and rep["processors"]["model"]["config"] == "dvqe-s16"
    scen = rep["scenarios"]
    assert list(scen) == [c.scenario for c in clips] + [OVERALL]
    for name, block in scen.items():
        assert set(block) == {BASELINE, "model"}, name
        assert block["model"]["n_clips"] == block[BASELINE]["n_clips"] == (6 if name == OVERALL else 1)
        assert block["model"]["rtf"] > 0 and set(block["model"]) - {"n_clips", "rtf", "rtf_wall", "lag_ms"} \
            == set(block[BASELINE]) - {"n_clips"}
        for k in ("dnsmos_ovrl", "dnsmos_p808") + (("tsos",) if name != "echo_fe_st" else ()):
            assert block["model"][k] is not None and block[BASELINE][k] is not None
    assert scen["noise"][BASELINE]["pesq_wb"] > 1.0 and scen["echo_fe_st"][BASELINE]["pesq_wb"] is None
    assert scen["echo_fe_st"]["model"]["erle_db"] is not None and scen["echo_fe_st"][BASELINE]["erle_db"] == 0.0
    assert scen["double_talk"]["model"]["aecmos_echo"] is not None
    assert scen["interferer"]["model"]["pdnsmos_ovrl"] is not None
    assert scen["interferer"]["model"]["interferer_suppression_db"] is not None
    assert len(rep["results"]) == 6 and md.read_text().startswith("| scenario | system |")


@pytest.mark.skipif(not {"speex_ns", "speex_aec"} <= PEERS_OK, reason="speexdsp peers not installed")
def test_compare_cli_peers_side_by_side(corpus, clips, tmp_path, capsys):
    out = tmp_path / "cmp.json"
    rc = main(["compare", "--peers", "speex_ns,speex_aec", "--data", str(corpus), "--n-per-scenario", "1",
               "--scenarios", "noise,double_talk", "--metrics", "pesq,si_sdr,dnsmos,erle", "--json", str(out),
               "--no-progress"])
    assert rc == 0
    assert "| double_talk | speex_aec |" in capsys.readouterr().out
    rep = json.loads(out.read_text())
    noise, dt = rep["scenarios"]["noise"], rep["scenarios"]["double_talk"]
    assert "speex_aec" not in noise and dt["speex_aec"]["n_clips"] == 1     # echo canceller: echo clips only
    assert dt["speex_ns"]["n_clips"] == 1                                   # suppressors: every clip
    ns, base = noise["speex_ns"], noise[BASELINE]
    assert ns["pesq_wb"] > base["pesq_wb"] or ns["dnsmos_bak"] > base["dnsmos_bak"], (ns, base)
    for name in ("speex_ns", "speex_aec"):
        assert 0 < dt[name]["rtf"] < 1 and dt[name]["lag_ms"] == 0.0, dt[name]
    assert dt["speex_aec"]["erle_db"] is not None


def test_cli_errors_name_the_fix(tmp_path, corpus, capsys):
    assert main(["eval", "--model", str(tmp_path / "model.onnx"), "--data", str(corpus)]) == 1
    assert "not supported" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "missing.pt"), "--data", str(corpus)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "--model", "identity", "--data", str(tmp_path / "nowhere")]) == 1
    assert "pocketvqe data prepare" in capsys.readouterr().err
    assert main(["eval", "--model", "identity", "--data", str(corpus), "--metrics", "pesq,mos"]) == 1
    assert "unknown group" in capsys.readouterr().err
    assert main(["compare", "--peers", "nope", "--data", str(corpus)]) == 1
    assert "unknown peer" in capsys.readouterr().err
    assert main(["compare", "--peers", "none", "--data", str(corpus)]) == 1
    assert "nothing to compare" in capsys.readouterr().err


def test_markdown_table_marks_missing_values():
    rep = {"processors": {"a": {}}, "scenarios": {"noise": {BASELINE: {"n_clips": 1, "pesq_wb": 1.5, "tsos": math.nan},
                                                             "a": {"n_clips": 1, "pesq_wb": 2.25, "tsos": 0.1,
                                                                   "rtf": 0.01}}}}
    md = markdown_table(rep, legend=False)
    assert md.splitlines()[0] == "| scenario | system | n | PESQ | TSOS | RTF |"
    assert "| noise | input | 1 | 1.50 | - | - |" in md and "| noise | a | 1 | 2.25 | 0.100 | 0.0100 |" in md


def test_deltas_against_the_float_model_and_their_targets():
    """int8 - float per scenario, each against INT8_DELTA_TARGETS: a loss beyond a bound is a miss, ITS
    must stay within +-1 dB either way, TSOS is shown as its decrease; an unknown reference is an error."""
    from pocketvqe.evaluate import delta_table, deltas
    from pocketvqe.export import INT8_DELTA_TARGETS
    rep = {"processors": {"dvqe-s16": {}, "dvqe-s16-int8": {}},
           "scenarios": {
               "double_talk": {"input": {"pesq_wb": 1.1},
                               "dvqe-s16": {"pesq_wb": 1.50, "aecmos_deg": 3.00, "tsos": 0.2},
                               "dvqe-s16-int8": {"pesq_wb": 1.46, "aecmos_deg": 2.85, "tsos": 0.3}},
               "interferer": {"dvqe-s16": {"interferer_suppression_db": 12.0, "si_sdr": 4.0},
                              "dvqe-s16-int8": {"interferer_suppression_db": 13.5, "si_sdr": 3.6}}}}
    d = deltas(rep, "dvqe-s16")
    dt = d["double_talk"]["dvqe-s16-int8"]
    assert dt["pesq_wb"]["delta"] == pytest.approx(-0.04) and dt["pesq_wb"]["meets"]          # -0.04 >= -0.05
    assert dt["aecmos_deg"]["delta"] == pytest.approx(-0.15) and dt["aecmos_deg"]["meets"] is False
    assert dt["tsos"]["delta"] == pytest.approx(-0.1) and dt["tsos"]["meets"] is None          # no target
    it = d["interferer"]["dvqe-s16-int8"]
    assert it["interferer_suppression_db"]["meets"] is False                                   # +1.5 dB: outside +-1
    assert it["si_sdr"]["meets"] and INT8_DELTA_TARGETS["si_sdr"] == -0.5
    md = delta_table(d, "dvqe-s16")
    assert "| double_talk | dvqe-s16-int8 | -0.04 |" in md and "-0.15 !" in md
    assert "missed targets: double_talk dvqe-s16-int8 dAEC deg -0.15" in md
    assert deltas(rep, "dvqe-s16", {"pesq_wb": -0.01})["double_talk"]["dvqe-s16-int8"]["pesq_wb"]["meets"] is False
    with pytest.raises(PocketVQEError, match="--delta-vs 'float' is not one of the systems"):
        deltas(rep, "float")
