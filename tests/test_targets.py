"""Device targets: a tiny real streaming .pte (Linear + tanh, state threaded) on host, host-native and qemu-arm64.

host, host-native (the native runner) and qemu-arm64 (the aarch64 native runner under qemu) run for
real. adb and ssh need hardware that is not here: their tests check command lines and parsing against
hand-written transcripts (tests/fixtures/device/README.md), and drive the whole adb/ssh flow through
*local* stand-ins (a fake adb that copies files and runs the job script with sh, a fake runner that
copies inputs to outputs; ssh run locally, the pushed aarch64 runner under qemu). None of those is
presented as a device run.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pocketvqe.cli import main
from pocketvqe.device_tests import native
from pocketvqe.device_tests.targets import RunResult, get_target, list_targets, stack_frames
from pocketvqe.device_tests.targets import adb as adb_mod
from pocketvqe.device_tests.targets import qemu as qemu_mod
from pocketvqe.device_tests.targets.base import check_state
from pocketvqe.device_tests.targets.ssh import SshTarget
from pocketvqe.errors import PocketVQEError
from pocketvqe.signals import snr_db

FIX = Path(__file__).parent / "fixtures" / "device"
D_IN, D_H, N_FRAMES = 8, 16, 12


# ----------------------------------------------------------------------------------------------
# a tiny streaming module and its .pte programs


def _build_tiny(out: Path) -> SimpleNamespace:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.exir import to_edge_transform_and_lower
    from torch import nn
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    class Step(nn.Module):
        """forward(x (1, 8), h (1, 16)) -> (y (1, 8), h_new (1, 16))."""

        def __init__(self):
            super().__init__()
            self.inp, self.rec, self.out = nn.Linear(D_IN, D_H), nn.Linear(D_H, D_H), nn.Linear(D_H, D_IN)

        def forward(self, x, h):
            h_new = torch.tanh(self.inp(x) + self.rec(h))
            return self.out(h_new), h_new

    torch.manual_seed(0)
    model = Step().eval()
    example = (torch.randn(1, D_IN), torch.zeros(1, D_H))
    rng = np.random.default_rng(1)
    with torch.no_grad():
        prog = to_edge_transform_and_lower(torch.export.export(model, example),
                                           partitioner=[XnnpackPartitioner()]).to_executorch()
        (out / "fp32.pte").write_bytes(prog.buffer)

        gm = torch.export.export(model, example).module()
        prepared = prepare_pt2e(gm, XNNPACKQuantizer().set_global(get_symmetric_quantization_config()))
        for _ in range(32):  # calibrate on inputs like the test's, with states the cell produces
            prepared(torch.from_numpy(rng.standard_normal((1, D_IN)).astype(np.float32)),
                     torch.from_numpy(np.tanh(rng.standard_normal((1, D_H))).astype(np.float32)))
        qref = convert_pt2e(prepared)
        prog = to_edge_transform_and_lower(torch.export.export(qref, example),
                                           partitioner=[XnnpackPartitioner()]).to_executorch()
        (out / "int8.pte").write_bytes(prog.buffer)
    frames = [[rng.standard_normal((1, D_IN)).astype(np.float32)] for _ in range(N_FRAMES)]
    return SimpleNamespace(fp32=out / "fp32.pte", int8=out / "int8.pte", model=model, qref=qref,
                           frames=frames, h0=np.zeros((1, D_H), np.float32))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _build_tiny(tmp_path_factory.mktemp("tiny"))


def eager(module, frames, h0):
    import torch

    h = torch.from_numpy(h0)
    ys = []
    with torch.no_grad():
        for (x,) in frames:
            y, h = module(torch.from_numpy(x), h)
            ys.append(y.numpy().copy())
    return np.stack(ys), h.numpy()


@pytest.fixture(scope="module")
def host_results(tiny):
    host = get_target("host")
    return {name: host.run_frames(getattr(tiny, name), tiny.frames, 1, [tiny.h0], time_it=True, warmup=2)
            for name in ("fp32", "int8")}


# ----------------------------------------------------------------------------------------------
# frame packing


def test_stack_frames_accepts_lists_single_arrays_and_stacked_dicts():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 1, 3)).astype(np.float32)
    b = rng.standard_normal((5, 2)).astype(np.float32)
    per_frame = stack_frames([[a[t], b[t]] for t in range(5)])
    stacked = stack_frames({"a": a, "b": b})
    for x, y, ref in zip(per_frame, stacked, (a, b)):
        np.testing.assert_array_equal(x, ref)
        np.testing.assert_array_equal(y, ref)
    single = stack_frames([a[t] for t in range(5)])
    assert len(single) == 1 and single[0].shape == (5, 1, 3) and single[0].flags.c_contiguous


@pytest.mark.parametrize("bad, msg", [
    ([], "no frames"),
    ([[np.zeros(2)], [np.zeros(2), np.zeros(2)]], "frame 1 has 2 inputs"),
    ([[np.zeros(2)], [np.zeros(3)]], "same shape"),
    ({"a": np.zeros((3, 2)), "b": np.zeros((4, 2))}, "frame count"),
    ({"a": np.zeros((0, 2))}, "zero frames"),
])
def test_stack_frames_refuses_bad_frames(bad, msg):
    with pytest.raises(PocketVQEError, match=msg):
        stack_frames(bad)


def test_state_count_must_match():
    with pytest.raises(PocketVQEError, match="n_state is 2 but 1 initial state"):
        check_state([np.zeros(3)], 2)


# ----------------------------------------------------------------------------------------------
# host (real)


def test_host_fp32_matches_eager_with_state_threaded(tiny, host_results):
    res = host_results["fp32"]
    ref_y, ref_h = eager(tiny.model, tiny.frames, tiny.h0)
    assert isinstance(res, RunResult) and res.n_frames == N_FRAMES and not res.emulated
    assert res.outputs[0].shape == (N_FRAMES, 1, D_IN)
    np.testing.assert_allclose(res.outputs[0], ref_y, atol=1e-5, rtol=0)
    np.testing.assert_allclose(res.final_state[0], ref_h, atol=1e-5, rtol=0)
    assert len(res.per_frame) == N_FRAMES and res.frame(3)[0].shape == (1, D_IN)
    # state really threads: frame 5 differs from running frame 5 alone from the initial state
    alone, _ = eager(tiny.model, tiny.frames[5:6], tiny.h0)
    assert np.abs(alone[0] - res.outputs[0][5]).max() > 1e-3
    assert res.per_frame_us is not None and res.per_frame_us.shape == (N_FRAMES,) and (res.per_frame_us > 0).all()
    assert res.load_ms is not None and res.load_ms > 0
    assert res.extra["threads_applied"] == 1
    json.dumps(res.summary())


def test_host_int8_matches_pt2e_reference_and_is_quantized(tiny, host_results):
    res = host_results["int8"]
    ref_y, _ = eager(tiny.qref, tiny.frames, tiny.h0)
    assert snr_db(ref_y, res.outputs[0]) > 35  # int8 .pte (host) vs PyTorch int8 reference
    diff_fp32 = np.abs(res.outputs[0] - host_results["fp32"].outputs[0]).max()
    assert diff_fp32 > 1e-4, "the int8 program gives fp32 outputs: quantization did not happen"


def test_host_untimed_run_has_no_timings(tiny):
    res = get_target("host").run_frames(tiny.fp32, {"x": np.stack([f[0] for f in tiny.frames[:3]])}, 1, [tiny.h0])
    assert res.per_frame_us is None and res.timing == "not timed" and res.n_frames == 3


def test_host_errors_name_the_fix(tiny, tmp_path):
    host = get_target("host")
    with pytest.raises(PocketVQEError, match="takes 2 inputs"):
        host.run_frames(tiny.fp32, tiny.frames[:2], 0, [])
    with pytest.raises(PocketVQEError, match="no method 'step'"):
        host.run_frames(tiny.fp32, tiny.frames[:2], 1, [tiny.h0], method="step")
    with pytest.raises(PocketVQEError, match="does not exist"):
        host.run_frames(tmp_path / "missing.pte", tiny.frames[:2], 1, [tiny.h0])
    bad = tmp_path / "bad.pte"
    bad.write_bytes(b"not a program at all, just bytes")
    with pytest.raises(PocketVQEError, match="could not load"):
        host.run_frames(bad, tiny.frames[:2], 1, [tiny.h0])


def test_get_target_specs():
    assert get_target("host").name == "host"
    assert get_target("qemu-arm64").name == "qemu-arm64"
    assert get_target("adb").name == "adb" and get_target("adb:XYZ").serial == "XYZ"
    assert get_target("ssh:pi@board").host == "pi@board"
    for bad in ("", "phone", "ssh", "ssh:", "host:1"):
        with pytest.raises(PocketVQEError):
            get_target(bad)


# ----------------------------------------------------------------------------------------------
# qemu-arm64 (real emulation)


@pytest.mark.parametrize("spec, arch", [("host-native", "host"), ("qemu-arm64", "aarch64")])
def test_native_targets_match_host_fp32_and_int8(tiny, host_results, spec, arch, native_runner):
    native_runner(arch)
    target = get_target(spec)
    info = target.describe()
    assert info["ready"] and info["runtime"].startswith("executorch (native")
    assert info["runtime_version"] == native.executorch_version()
    for name in ("fp32", "int8"):
        res = target.run_frames(getattr(tiny, name), tiny.frames, 1, [tiny.h0], time_it=True, warmup=2)
        host = host_results[name]
        assert res.outputs[0].shape == host.outputs[0].shape
        assert res.extra["runtime_version"] == native.executorch_version()
        diff = float(np.abs(res.outputs[0] - host.outputs[0]).max())
        print(f"\n{name}: {spec} vs host max|diff| {diff:.3g}, wall {res.extra['wall_s']} s")
        if spec == "host-native":           # the same runtime on the same CPU: the same bits
            assert not res.emulated and res.per_frame_us is not None and res.per_frame_us.shape == (N_FRAMES,)
            assert res.peak_rss_kb and res.peak_rss_kb < 200 * 1024, "the runner alone, no torch: well under 200 MiB"
            np.testing.assert_array_equal(res.outputs[0], host.outputs[0])
            np.testing.assert_array_equal(res.final_state[0], host.final_state[0])
            continue
        assert res.emulated and res.per_frame_us is None, "emulated runs must not report timings"
        assert res.extra["arch"] == "aarch64"
        assert snr_db(host.outputs[0], res.outputs[0]) > (100.0 if name == "fp32" else 30.0)
        if name == "fp32":                   # x86 and ARM fp32 kernels agree to ~1e-7
            assert diff < 1e-5
            np.testing.assert_allclose(res.final_state[0], host.final_state[0], atol=1e-5)


def test_native_target_without_a_runner_says_how(tiny, tmp_path):
    target = qemu_mod.QemuArm64Target(cache_dir=tmp_path / "empty-cache")
    assert target.describe()["ready"] is False
    (tmp_path / "empty").mkdir()
    target = qemu_mod.QemuArm64Target(runner=str(tmp_path / "empty"))
    with pytest.raises(PocketVQEError, match="pocketvqe runner build"):
        target.run_frames(tiny.fp32, tiny.frames[:2], 1, [tiny.h0])


def test_ssh_flow_over_a_local_transport_with_the_pushed_aarch64_runner(tiny, host_results, tmp_path, native_runner):
    """The ssh code path end to end, but 'ssh' runs the command here and the pushed aarch64 runner
    runs under qemu: checks copying, remote command lines and result reading."""
    native_runner("aarch64")
    calls = []

    def local_exec(argv, stdin):
        calls.append(list(argv))
        if argv[0] == "ssh":
            cmd = argv[-1]
            if "pocketvqe-runner" in cmd:        # the board would run it natively; here, under qemu
                cmd = " ".join(native.QEMU_CMD) + " " + cmd
            return subprocess.run(["sh", "-c", cmd], input=stdin, capture_output=True, text=True)
        assert argv[0] == "scp"
        *srcs, dst = [a for a in argv[argv.index("ConnectTimeout=15") + 1:]]
        for s in srcs:
            src = Path(s.split(":", 1)[1] if s.startswith("board:") else s)
            d = Path(dst.split(":", 1)[1] if dst.startswith("board:") else dst)
            shutil.copytree(src, d / src.name)
        return subprocess.CompletedProcess(argv, 0, "", "")

    target = SshTarget("board", remote_tmp=str(tmp_path), exec_fn=local_exec)
    res = target.run_frames(tiny.int8, tiny.frames, 1, [tiny.h0], time_it=True)
    assert [c[0] for c in calls] == ["ssh", "scp", "ssh", "scp", "ssh"]
    assert calls[0][-1].startswith("mktemp -d") and calls[-1][-1].startswith("rm -rf ")
    assert "pocketvqe-runner' job " in calls[2][-1] or "pocketvqe-runner job " in calls[2][-1]
    assert not list(tmp_path.glob("pocketvqe.*")), "the remote work folder was not removed"
    assert res.target == "ssh:board" and not res.emulated
    assert res.per_frame_us is not None and res.per_frame_us.shape == (N_FRAMES,)
    assert res.extra["arch"] == "aarch64"
    assert snr_db(host_results["int8"].outputs[0], res.outputs[0]) > 30


# ----------------------------------------------------------------------------------------------
# ssh: transcripts


def _replay(transcript):
    steps = list(transcript)

    def exec_fn(argv, stdin):
        step = steps.pop(0)
        assert list(argv) == step["argv"]
        if "stdin_startswith" in step:
            assert stdin is not None and stdin.startswith(step["stdin_startswith"])
        return subprocess.CompletedProcess(argv, step["returncode"], step["stdout"], step["stderr"])
    return exec_fn, steps


def test_ssh_describe_from_transcript():
    exec_fn, left = _replay(json.loads((FIX / "ssh_describe.json").read_text()))
    info = SshTarget("ubuntu@rpi5", exec_fn=exec_fn, ssh_opts="").describe()
    assert not left
    assert info["target"] == "ssh:ubuntu@rpi5" and info["arch"] == "aarch64" and info["emulated"] is False
    assert info["ready"] is True and info["cpu_count"] == 4 and info["cpu"] == "CPU part\t: 0xd0b"


def test_ssh_denied_names_the_fix():
    exec_fn, _ = _replay(json.loads((FIX / "ssh_denied.json").read_text()))
    with pytest.raises(PocketVQEError, match="ssh-copy-id ubuntu@rpi5"):
        SshTarget("ubuntu@rpi5", exec_fn=exec_fn, ssh_opts="").describe()


def test_ssh_command_lines_translate_the_port_for_scp():
    t = SshTarget("me@board", ssh_opts="-p 2222 -i /k")
    assert t.ssh_argv("true") == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15",
                                  "-p", "2222", "-i", "/k", "me@board", "true"]
    assert t.scp_argv(["/a"], "me@board:/tmp/x/")[:8] == ["scp", "-q", "-r", "-o", "BatchMode=yes", "-o",
                                                           "ConnectTimeout=15", "-P"]
    with pytest.raises(PocketVQEError, match="bad ssh host"):
        SshTarget("-oProxyCommand=x")


# ----------------------------------------------------------------------------------------------
# adb: transcripts, and the whole flow through a local fake adb + fake runner


def test_adb_devices_parsing():
    devs = adb_mod.parse_devices((FIX / "adb_devices_l.txt").read_text())
    assert [(d["serial"], d["state"]) for d in devs] == [("2A261FDH300BXC", "device"), ("R5CT21ABCDE", "unauthorized")]
    assert devs[0]["model"] == "Pixel_7"


def test_adb_describe_from_transcript():
    seen = []

    def exec_fn(argv):
        seen.append(argv)
        return subprocess.CompletedProcess(argv, 0, (FIX / "adb_describe.txt").read_text(), "")

    info = adb_mod.AdbTarget("2A261FDH300BXC", runner=None, exec_fn=exec_fn).describe()
    assert seen == [["adb", "-s", "2A261FDH300BXC", "shell", adb_mod.DESCRIBE_SCRIPT]]
    assert info["arch"] == "aarch64" and info["abi"] == "arm64-v8a" and info["model"] == "Google Pixel 7"
    assert info["os"].startswith("Android 14 (SDK 34)") and info["cpu_count"] == 8
    assert info["ready"] is False and "POCKETVQE_ADB_RUNNER" in info["note"]


def test_adb_log_parsing_from_transcript():
    log = adb_mod.parse_runner_log((FIX / "adb_run_ok.txt").read_text(), n_frames=3, time_it=True, warmup=2)
    assert log.done and not log.errors
    np.testing.assert_allclose(log.cold_frame_us, [61.198, 55.990, 54.688])
    np.testing.assert_allclose(log.steady_us, [17.904, 17.578, 18.229])  # 2 warm-up iterations dropped
    assert min(log.load_ms) == pytest.approx(2.497083)
    assert log.steady_mean_us == pytest.approx(131.836 / 5)

    old = adb_mod.parse_runner_log((FIX / "adb_run_total_only.txt").read_text(), n_frames=3, time_it=True, warmup=2)
    assert old.done and old.steady_us is None and old.steady_mean_us == pytest.approx(131.836 / 5)

    nolog = adb_mod.parse_runner_log((FIX / "adb_run_nolog.txt").read_text(), n_frames=3, time_it=True)
    assert nolog.done and nolog.steady_us is None and nolog.steady_mean_us is None
    assert nolog.cold_frame_us == [None, None, None]


@pytest.mark.parametrize("fixture, fix", [
    ("adb_run_link_error.txt", "ANDROID_STL=c++_static"),
    ("adb_run_old_flags.txt", "older than the flags"),
    ("adb_run_exec_error.txt", "ExecuTorch release that exported it"),
])
def test_adb_failures_name_the_fix(fixture, fix):
    text = (FIX / fixture).read_text()
    log = adb_mod.parse_runner_log(text, n_frames=3, time_it=False)
    assert not log.done and log.errors
    with pytest.raises(PocketVQEError, match=fix.replace("+", r"\+")):
        raise adb_mod.explain_runner_failure(text, "SERIAL")


FAKE_RUNNER = r"""#!/bin/sh
# Stand-in for executor_runner, for tests only: output i = input i (an identity "model"),
# logging in the runner's format. It is not ExecuTorch and runs no program.
n=1; out=""; inputs=""
for a in "$@"; do
  case "$a" in
    --inputs=*) inputs="${a#--inputs=}";;
    --output_file=*) out="${a#--output_file=}";;
    --num_executions=*) n="${a#--num_executions=}";;
  esac
done
echo "I 00:00:00.001000 executorch:executor_runner.cpp:583] Model loaded in 1.250000 ms." >&2
i=1
while [ $i -le $n ]; do
  echo "I 00:00:00.002000 executorch:executor_runner.cpp:713] Iteration $i of $n: 0.0${i}0000 ms" >&2
  i=$((i+1))
done
echo "I 00:00:00.003000 executorch:executor_runner.cpp:721] Model executed successfully $n time(s) in 0.500000 ms." >&2
if [ -n "$out" ]; then
  k=0; IFS=,
  for f in $inputs; do cp "$f" "$out-$k.bin"; k=$((k+1)); done
fi
"""


def test_adb_flow_with_a_local_fake_adb_and_fake_runner(tiny, tmp_path):
    """The job script really runs (sh here); the 'phone' is a local folder and the runner a fake."""
    device = tmp_path / "device"
    device.mkdir()
    runner = tmp_path / "executor_runner"
    runner.write_text(FAKE_RUNNER)
    calls = []

    def fake_adb(argv):
        calls.append(list(argv))
        assert argv[:3] == ["adb", "-s", "SER"]
        cmd = argv[3:]
        if cmd[0] == "shell":
            return subprocess.run(["sh", "-c", " ".join(cmd[1:])], capture_output=True, text=True)
        *srcs, dst = cmd[1:]
        for s in srcs:
            target = Path(dst) / Path(s).name if (dst.endswith("/") or Path(dst).is_dir()) else Path(dst)
            shutil.copyfile(s, target)
        return subprocess.CompletedProcess(argv, 0, "", "")

    target = adb_mod.AdbTarget("SER", runner=runner, remote_root=str(device), exec_fn=fake_adb)
    xs = np.stack([f[0] for f in tiny.frames[:5]])
    h0 = np.full((1, D_H), 0.5, np.float32)
    res = target.run_frames(tiny.fp32, {"x": xs}, 1, [h0], time_it=True, warmup=1)
    # identity stand-in: the outputs are the frames, the state stays what it was
    np.testing.assert_array_equal(res.outputs[0], xs)
    np.testing.assert_array_equal(res.final_state[0], h0)
    np.testing.assert_allclose(res.per_frame_us, [20.0, 30.0, 40.0, 50.0, 60.0])  # Iteration 2..6 of 6
    assert res.extra["cold_frame_us"] == [500.0] * 5 and res.load_ms == 1.25
    kinds = [c[3] + (" " + c[4].split()[0] if c[3] == "shell" else "") for c in calls]
    assert kinds == ["shell mkdir", "push", "shell chmod", "push", "shell sh", "pull", "shell rm"]
    assert calls[1][-1] == f"{device}/executor_runner"
    assert not [p for p in device.iterdir() if p.name.startswith("job-")], "job folder left on the 'phone'"


def test_adb_checks_inputs_against_the_program(tiny, tmp_path):
    runner = tmp_path / "executor_runner"
    runner.write_text("#!/bin/sh\n")
    target = adb_mod.AdbTarget("SER", runner=runner, exec_fn=lambda argv: pytest.fail("adb must not be called"))
    with pytest.raises(PocketVQEError, match=r"input 0 is \[1, 8\] per frame"):
        target.run_frames(tiny.fp32, {"x": np.zeros((2, 1, 9), np.float32)}, 1, [tiny.h0])
    with pytest.raises(PocketVQEError, match="no executor_runner"):
        adb_mod.AdbTarget("SER", runner=tmp_path / "nope").run_frames(tiny.fp32, tiny.frames[:1], 1, [tiny.h0])


def test_adb_script_threads_state_files():
    script = adb_mod.device_script("/data/local/tmp/pocketvqe/job-1", runner="/data/local/tmp/pocketvqe/executor_runner",
                                   method="forward", n_frames=100, in_nbytes=[32, 1920], n_state=2, n_outputs=3,
                                   threads=1, time_it=False, warmup=0)
    assert "--inputs=cur_00.bin,cur_01.bin,state_00.bin,state_01.bin" in script
    assert "dd if=in_01.raw of=cur_01.bin bs=1920 skip=$t count=1" in script
    assert "cat o-0.bin >> out_00.raw" in script
    assert "cp o-1.bin state_00.bin" in script and "cp o-2.bin state_01.bin" in script
    assert "--method_name=forward --cpu_threads=1" in script and "POCKETVQE_TIMING" not in script


# ----------------------------------------------------------------------------------------------
# CLI


def test_cli_list_and_describe(capsys):
    assert main(["device", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["target"] for r in rows} >= {"host", "qemu-arm64"}
    assert main(["device", "describe", "host", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["emulated"] is False and info["runtime_version"]
    assert main(["device", "describe", "qemu-arm64"]) == 0
    assert "emulated" in capsys.readouterr().out
    assert main(["device", "describe", "nowhere"]) == 1
    assert "unknown target" in capsys.readouterr().err


def test_cli_setup_builds_the_runner_once(capsys, native_runner):
    native_runner("aarch64")
    assert main(["device", "setup", "qemu-arm64"]) == 0          # cached: returns at once
    assert str(native.runner_dir("aarch64")) in capsys.readouterr().out


def test_list_targets_reports_a_runner_not_built(tmp_path):
    rows = {r["target"]: r for r in list_targets(cache_dir=tmp_path)}
    assert rows["host"]["available"] is True
    detail = rows["qemu-arm64"]["detail"]
    assert "pocketvqe runner build --arch aarch64" in detail or "make setup" in detail


def test_runner_folder_is_self_contained(native_runner):
    """The aarch64 folder runs on a board as it is: every library it needs is in lib/ or the C/C++ runtime."""
    folder = native_runner("aarch64")
    system = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libpthread.so.0", "libdl.so.2",
              "ld-linux-aarch64.so.1"}
    ours = {p.name for p in (folder / "lib").glob("*.so")}
    for f in [folder / "pocketvqe-runner", *(folder / "lib").glob("*.so")]:
        out = subprocess.run(["readelf", "-d", str(f)], capture_output=True, text=True, check=True).stdout
        needed = {line.split("[")[1].split("]")[0] for line in out.splitlines() if "(NEEDED)" in line}
        assert needed <= system | ours, (f.name, needed - system - ours)
        assert "Machine:                           AArch64" in subprocess.run(
            ["readelf", "-h", str(f)], capture_output=True, text=True, check=True).stdout
    assert "$ORIGIN/lib" in subprocess.run(["readelf", "-d", str(folder / "pocketvqe-runner")],
                                           capture_output=True, text=True, check=True).stdout
