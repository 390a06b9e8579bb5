"""The native runner (``native/``, C++17 + CMake): built for the host and for aarch64, run from Python.

``pocketvqe-runner`` streams a WAV through a program, verifies a ``.bpte``, records an ETDump and runs
the harness's job folders (see ``native/runner.cpp``). It is built against the ExecuTorch runtime an
executorch wheel ships (``executorch/lib/*.so`` + ``executorch/include``, 1.5.1 and later):

- ``host``: the installed executorch's libraries, with the system ``g++`` and ``cmake``;
- ``aarch64``: the aarch64 wheel's libraries (``pip download --platform manylinux_2_28_aarch64``, cached),
  cross-compiled with Debian's ``g++-aarch64-linux-gnu``; on an x86 host it runs under
  ``qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu`` (the cross toolchain's arm64 libc), on an
  ARM Linux board as it is.

A build is a self-contained folder (``pocketvqe-runner``, ``pocketvqe-example`` and ``lib/*.so``, found
through RPATH ``$ORIGIN/lib``), cached by architecture, executorch version and a hash of the sources,
and swapped in only when complete.

>>> runner = build_runner("aarch64")                    # doctest: +SKIP
>>> NativeRunner(runner).verify("build/dvqe-s16-int8.bpte", rtol=0.0, atol=atols, min_snr_db=bounds)["pass"]  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import executorch

from pocketvqe.errors import PocketVQEError
from pocketvqe.fileio import locked

from .runner_io import RUNNER_OK_MARK, parse_ok_line, run_cmd

SOURCE = Path(__file__).resolve().parent.parent / "native"
ARCHES = ("host", "aarch64")
BINARY = "pocketvqe-runner"
EXAMPLE = "pocketvqe-example"
QEMU = "qemu-aarch64"
# qemu's default "max" CPU advertises SME, and XNNPACK's int8 path then computes wrong results under
# emulation: emulate a Cortex-A76 (a phone's big core). -L: where the arm64 loader and libc live.
QEMU_CMD = (QEMU, "-cpu", os.environ.get("POCKETVQE_QEMU_CPU", "cortex-a76"), "-L", "/usr/aarch64-linux-gnu")
CROSS_CXX = "aarch64-linux-gnu-g++"
WHEEL_PLATFORM = "manylinux_2_28_aarch64"
WHEEL_PYTHON = "3.13"
TOOLS = {"cmake": "cmake", "g++": "g++", CROSS_CXX: "g++-aarch64-linux-gnu", QEMU: "qemu-user"}


def executorch_version() -> str:
    return importlib.metadata.version("executorch")


def default_cache_dir() -> Path:
    base = os.environ.get("POCKETVQE_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "pocketvqe") / "runner"


def host_arch() -> str:
    return platform.machine()


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        raise PocketVQEError(f"`{tool}` is not installed: run `apt-get install {TOOLS.get(tool, tool)}` "
                             "(`make setup` installs every system package the project uses)")


def source_hash() -> str:
    h = hashlib.sha256()
    for p in sorted(SOURCE.rglob("*")):
        if p.is_file() and p.suffix in (".cpp", ".h", ".txt", ".cmake"):
            h.update(p.relative_to(SOURCE).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def executorch_root(arch: str, cache: Path | None = None) -> Path:
    """The executorch package folder whose runtime the runner links: the installed one for the host,
    the aarch64 wheel's (downloaded once into the cache) for aarch64."""
    version = executorch_version()
    if arch == "host" or (arch == "aarch64" and host_arch() == "aarch64"):
        root = Path(list(executorch.__path__)[0])
        if not (root / "lib" / "libexecutorch.so").is_file():
            raise PocketVQEError(f"the installed executorch {version} ships no native runtime ({root}/lib): the "
                                 "runner needs executorch>=1.5.1 (`make setup` installs the pinned version)")
        return root
    cache = Path(cache or default_cache_dir())
    root = cache / f"executorch-{version}-aarch64" / "executorch"
    if (root / "lib" / "libexecutorch.so").is_file():
        return root
    with tempfile.TemporaryDirectory(dir=_mkdir(cache), prefix=".wheel-") as tmp:
        print(f"fetching the executorch {version} aarch64 wheel (its runtime libraries and headers)", file=sys.stderr)
        run_cmd([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--platform", WHEEL_PLATFORM,
                 "--python-version", WHEEL_PYTHON, "--only-binary", ":all:", f"executorch=={version}", "-d", tmp],
                what="pip download of the aarch64 executorch wheel", timeout=900,
                fix="check that the package index carries it (pip needs a registry for this one download)")
        wheel = next(Path(tmp).glob("executorch-*.whl"))
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if name.startswith(("executorch/include/", "executorch/lib/")):
                    z.extract(name, unpacked)
        final = root.parent
        if final.exists():
            shutil.rmtree(final)
        os.replace(unpacked, final)
    return root


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def runner_dir(arch: str, cache: Path | None = None) -> Path:
    return Path(cache or default_cache_dir()) / f"{arch}-{executorch_version()}-{source_hash()}"


def build_runner(arch: str = "host", cache: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Build (or find, cached) the runner folder for ``arch``; returns it. Needs cmake and g++
    (aarch64: g++-aarch64-linux-gnu)."""
    if arch not in ARCHES:
        raise PocketVQEError(f"unknown runner architecture {arch!r}: use one of {', '.join(ARCHES)}")
    cache = Path(cache) if cache else default_cache_dir()
    out = runner_dir(arch, cache)
    if (out / BINARY).is_file() and not force:
        return out
    with locked(cache):                     # one build at a time per cache (parallel test workers, two shells)
        if (out / BINARY).is_file() and not force:
            return out                      # another process built it while this one waited
        return _build(arch, cache, out)


def _build(arch: str, cache: Path, out: Path) -> Path:
    cross = arch == "aarch64" and host_arch() != "aarch64"
    for tool in ("cmake", CROSS_CXX if cross else "g++"):
        _need(tool)
    et = executorch_root(arch, cache)
    with tempfile.TemporaryDirectory(dir=_mkdir(cache), prefix=f".build-{arch}-") as tmp:
        cfg = ["cmake", "-S", str(SOURCE), "-B", f"{tmp}/build", f"-DEXECUTORCH_ROOT={et}",
               f"-DPOCKETVQE_ET_VERSION={executorch_version()}", "-DCMAKE_BUILD_TYPE=Release"]
        if cross:
            cfg.append(f"-DCMAKE_TOOLCHAIN_FILE={SOURCE / 'aarch64-linux-gnu.cmake'}")
        print(f"building the native runner for {arch} (executorch {executorch_version()})", file=sys.stderr)
        fix = "see the compiler's message above; `make setup` installs cmake and the compilers"
        run_cmd(cfg, what=f"cmake configure ({arch})", fix=fix, timeout=300)
        run_cmd(["cmake", "--build", f"{tmp}/build", "-j", str(min(4, os.cpu_count() or 1))],
                what=f"building the {arch} runner", fix=fix, timeout=900)
        run_cmd(["cmake", "--install", f"{tmp}/build", "--prefix", f"{tmp}/out"],
                what=f"installing the {arch} runner", fix=fix, timeout=300)
        info = {"arch": "aarch64" if arch == "aarch64" else host_arch(), "executorch": executorch_version(),
                "source": source_hash(), "files": sorted(p.relative_to(f"{tmp}/out").as_posix()
                                                         for p in Path(f"{tmp}/out").rglob("*") if p.is_file())}
        (Path(tmp) / "out" / "runner.json").write_text(json.dumps(info, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(f"{tmp}/out", out)
    return out


def copy_runner(folder: Path, dest: str | os.PathLike) -> Path:
    """Copy a runner folder to ``dest`` (replaced whole, never half-written)."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(folder, tmp, symlinks=False)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


class NativeRunner:
    """A built runner folder and how to start it here (under qemu for aarch64 on an x86 host)."""

    def __init__(self, folder: str | os.PathLike, timeout: float = 1800):
        self.folder = Path(folder)
        self.binary = self.folder / BINARY
        if not self.binary.is_file():
            raise PocketVQEError(f"{self.folder} holds no {BINARY}: build it with `pocketvqe runner build`")
        meta = self.folder / "runner.json"
        self.info = json.loads(meta.read_text()) if meta.is_file() else {}
        self.arch = self.info.get("arch", host_arch())
        self.emulated = self.arch != host_arch()
        self.timeout = timeout

    @classmethod
    def for_arch(cls, arch: str, cache: str | os.PathLike | None = None) -> "NativeRunner":
        return cls(build_runner(arch, cache))

    def argv(self, *args: str, program: str = BINARY) -> list[str]:
        exe = str(self.folder / program)
        if self.emulated:
            _need(QEMU)
            return [*QEMU_CMD, exe, *args]
        return [exe, *args]

    def run(self, *args: str, check: bool = True, program: str = BINARY) -> subprocess.CompletedProcess:
        proc = run_cmd(self.argv(*args, program=program), what=f"{program} {args[0] if args else ''}".strip(),
                       fix="see the runner's message above", timeout=self.timeout, check=False)
        if check and proc.returncode != 0:
            raise PocketVQEError(_runner_error(proc))
        return proc

    def json(self, *args: str) -> dict[str, Any]:
        proc = self.run(*args)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def describe(self, pte: str | os.PathLike) -> dict[str, Any]:
        return self.json("info", str(pte))

    def enhance(self, pte, mic, out, far=None, enroll=None, threads: int = 1, warmup: int = 0,
                etdump=None) -> dict[str, Any]:
        """Stream ``mic`` (and ``far``) WAVs through ``pte`` into the ``out`` WAV; the latency report."""
        args = ["enhance", str(pte), "--mic", str(mic), "--out", str(out), "--threads", str(threads),
                "--warmup", str(warmup)]
        for flag, v in (("--far", far), ("--enroll", enroll), ("--etdump", etdump)):
            if v is not None:
                args += [flag, str(v)]
        return self.json(*args)

    def verify(self, bpte, rtol: float, atol, min_snr_db=None, method: str | None = None) -> dict[str, Any]:
        """Run a bundled program's cases (``method``'s only, if given): every element within ``rtol`` and
        ``atol``, each output's SNR over the cases at least ``min_snr_db`` (each one value, or one per
        output of the method; :func:`pocketvqe.export.bundle.bundle_tolerances`); the report (``pass``
        False on a mismatch, no exception)."""
        def listed(v):
            return ",".join(repr(float(x)) for x in ([v] if isinstance(v, (int, float)) else v))
        args = ["verify", str(bpte), "--rtol", repr(float(rtol)), "--atol", listed(atol),
                *(["--min-snr-db", listed(min_snr_db)] if min_snr_db is not None else [])]
        proc = self.run(*args, *(["--method", method] if method else []), check=False)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode not in (0, 1) or not lines:
            raise PocketVQEError(_runner_error(proc))
        report = json.loads(lines[-1])
        report["exit_code"] = proc.returncode
        return report

    def run_job(self, job: Path, out: Path) -> dict[str, Any]:
        proc = self.run("job", str(job), "--out", str(out), check=False)
        if proc.returncode != 0 or RUNNER_OK_MARK not in proc.stdout:
            raise PocketVQEError(_runner_error(proc))
        return parse_ok_line(proc.stdout, f"{BINARY} job")


def _runner_error(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.startswith("pocketvqe-runner: error:")]
    if lines:
        return lines[-1].replace("pocketvqe-runner: error: ", "native runner: ", 1)
    tail = ((proc.stdout or "") + (proc.stderr or "")).strip().splitlines()[-10:]
    return f"the native runner failed (exit {proc.returncode}):\n  " + "\n  ".join(tail)
