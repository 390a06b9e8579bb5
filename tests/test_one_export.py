"""`pocketvqe export` and `pocketvqe build` make their programs with the same export step and the same
int8 recipe: from the same checkpoint and seed they write byte-identical programs.

The mutation: another seed draws other calibration clips, so the int8 bytes differ, and the test sees
it. Small calibration (1 clip of 1 s, through the recipe's override fields) keeps it to about a minute.
"""
from __future__ import annotations

import hashlib

import pytest
import torch

from pocketvqe.build import BuildConfig, export_programs
from pocketvqe.cli import main
from pocketvqe.models import Enhancer, get_config, load_checkpoint
from pocketvqe.models.checkpoint import save_checkpoint
from pocketvqe.quant import recommended_ptq

CALIB = ["--calib-clips", "1", "--calib-seconds", "1"]


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("one-export") / "ns-s16.pt"
    save_checkpoint(path, Enhancer(get_config("ns-s16")).eval())
    return path


def test_build_takes_the_recipe_export_takes():
    assert BuildConfig(config="pvqe-s16", seed=3).ptq() == recommended_ptq("pvqe-s16", seed=3)
    assert BuildConfig(config="dvqe-s16", dynamic=()).ptq().dynamic == ()      # an override still wins


@pytest.mark.slow
def test_export_and_build_write_the_same_int8_program(ckpt, tmp_path):
    exported = tmp_path / "export"
    rc = main(["export", "--ckpt", str(ckpt), "--precision", "int8", *CALIB, "--bundle-frames", "2",
               "--no-etrecord", "--out", str(exported)])
    assert rc in (0, 1)                      # 1: a self-check bar missed; the bytes are what is compared
    bc = BuildConfig(config="ns-s16", ckpt=str(ckpt), out=str(tmp_path / "build"), calib_clips=1, calib_seconds=1.0)
    progs, _, _ = export_programs(load_checkpoint(ckpt)[0], bc)
    assert progs["int8"].pte.name == "ns-s16-int8.pte"
    assert sha(progs["int8"].pte) == sha(exported / "ns-s16-int8.pte")
    other = tmp_path / "other-seed"
    main(["export", "--ckpt", str(ckpt), "--precision", "int8", *CALIB, "--seed", "5", "--bundle-frames", "2",
          "--no-etrecord", "--out", str(other)])
    assert sha(other / "ns-s16-int8.pte") != sha(exported / "ns-s16-int8.pte")


@pytest.mark.slow
def test_build_exits_1_when_its_program_does_not_match_its_reference(ckpt, tmp_path, monkeypatch, capsys):
    """The main job on a mutated program: the fp32 program is exported from the model with one GRU gate's
    weights x1.1 but checked against the correct model's reference (what a wrong kernel looks like to the
    checks). `pocketvqe build` must fail its self-check, exit 1 and name the check."""
    import sys
    pkg = sys.modules["pocketvqe.export.package"]          # the module (the package exports its function)
    real = pkg.P.export_program

    def mutated(enhancer, int8=None, **kw):
        prog = real(enhancer, int8, **kw)
        if int8 is not None:
            return prog
        bad = load_checkpoint(ckpt)[0]
        with torch.no_grad():
            bad.net.bottleneck.gru.iz.weight.mul_(1.1)
        wrong = real(bad, None, **kw)
        wrong.reference, wrong.step = prog.reference, prog.step       # the correct model's reference
        return wrong

    monkeypatch.setattr(pkg.P, "export_program", mutated)
    small = lambda self: recommended_ptq(self.config, seed=self.seed, calib_clips=1, calib_seconds=1.0)  # noqa: E731
    monkeypatch.setattr(BuildConfig, "ptq", small)                # a small calibration keeps it short
    rc = main(["build", "--config", "ns-s16", "--ckpt", str(ckpt), "--no-qemu", "--bench-frames", "100",
               "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "ns-s16-fp32" in err and "bundled self-check failed" in err and "Traceback" not in err
