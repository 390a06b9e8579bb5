"""The qemu-arm64 environment: an arm64 Python sysroot for user-mode qemu, built from the registries.

Why this shape: the executorch aarch64 wheel needs libtorch, and PyPI's aarch64 torch
needs CUDA libraries, so neither runs under emulation. What does: Debian's ``qemu-user``
(``qemu-aarch64``) running an arm64 Python 3.13 taken from Debian trixie packages, plus the
aarch64 wheels of ``executorch-numpy-runtime`` (XNNPACK included) and ``numpy``.

``Sysroot(cache_dir).setup()`` (the CLI: ``pocketvqe device setup qemu-arm64``) builds that
sysroot once, in a cache folder (``default_cache_dir()`` unless given), from the package registries:

1. a private apt configuration (its own sources list, lists, cache and an empty dpkg status,
   ``APT::Architecture=arm64``) pointing at the Debian mirror this machine's own apt uses
   (``find_debian_mirror()``), with the suite changed to trixie;
2. ``apt-get install --download-only`` resolves and downloads the arm64 debs of Python 3.13;
3. ``dpkg-deb -x`` unpacks them into the sysroot (``lib``, ``bin``, ``sbin`` -> ``usr/...``);
4. ``pip download --platform manylinux_2_28_aarch64`` fetches the wheels;
5. the wheels are unpacked into ``opt/pocketvqe/site-packages`` in the sysroot;
6. a smoke run (``Sysroot.runner_info()``) imports the runtime under emulation and records what it is.

Every step is skipped when its output is already there; the finished sysroot carries a stamp
(``.pocketvqe-sysroot.json``, ``Sysroot.stamp()``) and is only swapped in when complete, so an
interrupted setup never leaves a half-built sysroot behind. ``Sysroot.ready()`` says whether it is
built for the current configuration (``config_key()``); ``Sysroot.python_cmd()`` and
``Sysroot.qemu_env()`` give the command line and environment of the emulated Python.

The target that runs programs in it is ``pocketvqe.device_tests.targets.qemu.QemuArm64Target``.
This module does not import the targets package (the package imports it).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pocketvqe.errors import PocketVQEError

from .runner_io import RUNNER_SCRIPT, parse_ok_line, run_cmd

SUITE = "trixie"
DEB_ARCH = "arm64"
PYTHON = "python3.13"
# Top-level Debian packages; apt resolves their dependencies.
DEB_PACKAGES = ("libc6", "libgcc-s1", "libstdc++6", f"{PYTHON}-minimal", "libpython3.13-stdlib")
WHEEL_PLATFORM = "manylinux_2_28_aarch64"   # the runtime's wheels are tagged manylinux_2_27/2_28
WHEEL_PYTHON = "3.13"
# executorch-numpy-runtime 1.4.0 embeds the ExecuTorch 1.3.1 runtime; it loads .pte files written
# by executorch 1.4.1 (checked in tests/test_targets.py).
WHEEL_SPECS = ("executorch-numpy-runtime==1.4.0", "numpy>=2.1,<2.5")
SITE_REL = "opt/pocketvqe/site-packages"
STAMP_NAME = ".pocketvqe-sysroot.json"
STAMP_FORMAT = 1
QEMU = "qemu-aarch64"

Progress = Callable[[str], None]


def _stderr_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def default_cache_dir() -> Path:
    """``$POCKETVQE_CACHE/qemu-arm64``, else ``$XDG_CACHE_HOME/pocketvqe/qemu-arm64``, else ``~/.cache/...``."""
    root = os.environ.get("POCKETVQE_CACHE")
    if root:
        return Path(root).expanduser() / "qemu-arm64"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pocketvqe" / "qemu-arm64"


def config_key() -> str:
    """Changes whenever what the sysroot is built from changes (then setup rebuilds it)."""
    blob = json.dumps([STAMP_FORMAT, SUITE, DEB_ARCH, DEB_PACKAGES, WHEEL_PLATFORM, WHEEL_PYTHON, WHEEL_SPECS])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# the host's Debian mirror


def _os_release() -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                out[k] = v.strip().strip('"')
    return out


def _parse_deb822(text: str) -> list[dict[str, str]]:
    stanzas, cur, last = [], {}, None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if cur:
                stanzas.append(cur)
            cur, last = {}, None
            continue
        if raw[0] in " \t" and last:
            cur[last] += "\n" + raw.strip()
            continue
        if ":" in raw:
            k, v = raw.split(":", 1)
            last = k.strip().lower()
            cur[last] = v.strip()
    if cur:
        stanzas.append(cur)
    return stanzas


def find_debian_mirror(etc_apt: Path = Path("/etc/apt")) -> tuple[str, str | None]:
    """(mirror URI, keyring or None) of the Debian archive this machine's apt already uses.

    Only the suite is changed later (to trixie). ``POCKETVQE_DEBIAN_MIRROR`` overrides it, for hosts
    whose apt does not point at Debian (Ubuntu, say).
    """
    env = os.environ.get("POCKETVQE_DEBIAN_MIRROR")
    if env:
        return env.rstrip("/"), os.environ.get("POCKETVQE_DEBIAN_KEYRING")
    codename = _os_release().get("VERSION_CODENAME", "")
    candidates: list[tuple[str, str | None, list[str]]] = []
    files = sorted((etc_apt / "sources.list.d").glob("*.sources")) if (etc_apt / "sources.list.d").is_dir() else []
    for f in files:
        for st in _parse_deb822(f.read_text(errors="replace")):
            if "deb" not in st.get("types", "").split() or st.get("enabled", "yes").lower() == "no":
                continue
            for uri in st.get("uris", "").split():
                candidates.append((uri, st.get("signed-by"), st.get("suites", "").split()))
    lists = [etc_apt / "sources.list"]
    if (etc_apt / "sources.list.d").is_dir():
        lists += sorted((etc_apt / "sources.list.d").glob("*.list"))
    for f in lists:
        if not f.is_file():
            continue
        for line in f.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            m = re.match(r"^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m:
                opts = m.group(1) or ""
                sb = re.search(r"signed-by=(\S+?)[\s\]]", opts + " ")
                candidates.append((m.group(2), sb.group(1) if sb else None, [m.group(3)]))
    # The main archive: a suite that is the codename itself (not -security, -updates, -backports).
    for uri, keyring, suites in candidates:
        if any(s == codename or (not codename and "-" not in s) for s in suites) and "security" not in uri:
            if keyring and "\n" in keyring:  # an inline key block: fall back to the default keyring
                keyring = None
            return uri.rstrip("/"), keyring
    raise PocketVQEError(
        "found no Debian archive in this machine's apt sources (/etc/apt/sources.list, "
        "/etc/apt/sources.list.d/): on a non-Debian host set POCKETVQE_DEBIAN_MIRROR to a Debian "
        "mirror URI (and POCKETVQE_DEBIAN_KEYRING to a keyring with the trixie keys)")


# ----------------------------------------------------------------------------------------------
# sysroot


class Sysroot:
    """The cache folder: ``apt/`` (private apt state), ``wheels/``, ``sysroot/`` (when built)."""

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.root = self.cache / "sysroot"
        self.apt = self.cache / "apt"
        self.wheels = self.cache / "wheels"

    @property
    def stamp_path(self) -> Path:
        return self.root / STAMP_NAME

    def stamp(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.stamp_path.read_text())
        except (OSError, ValueError):
            return None

    def ready(self) -> bool:
        st = self.stamp()
        return bool(st) and st.get("key") == config_key() and (self.root / "usr" / "bin" / PYTHON).exists()

    @property
    def python(self) -> Path:
        return self.root / "usr" / "bin" / PYTHON

    @property
    def site(self) -> Path:
        return self.root / SITE_REL

    # -- command line for the emulated Python -------------------------------------------------

    def qemu_env(self) -> dict[str, str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(self.site),
            "PYTHONNOUSERSITE": "1",
            # Bytecode is written into the sysroot on first import (the debs and wheels ship no
            # .pyc): the emulated start-up drops from ~45 s to ~10 s once the setup smoke run has run.
            "OPENBLAS_NUM_THREADS": "1",
            # qemu's default `max` CPU advertises SME; XNNPACK's SME int8 path then gives wrong
            # results under emulation (0.2 dB vs host; identical on cortex-a57/a76, neoverse-n1).
            # Emulate a typical phone core (armv8.2 + dotprod) unless the user picks another.
            "QEMU_CPU": os.environ.get("POCKETVQE_QEMU_CPU", "cortex-a76"),
        }
        if os.environ.get("TMPDIR"):
            env["TMPDIR"] = os.environ["TMPDIR"]
        return env

    def python_cmd(self, *args: str) -> list[str]:
        qemu = shutil.which(QEMU)
        if qemu is None:
            raise PocketVQEError(f"`{QEMU}` is not installed: run `apt-get install qemu-user` (Debian/Ubuntu)")
        return [qemu, "-L", str(self.root), str(self.python), *args]

    def run_python(self, *args: str, timeout: float = 600, what: str = "emulated Python") -> subprocess.CompletedProcess:
        return run_cmd(self.python_cmd(*args), what=what, env=self.qemu_env(), timeout=timeout,
                       fix=f"rebuild the sysroot with `pocketvqe device setup qemu-arm64 --force --cache {self.cache}`")

    # -- setup ---------------------------------------------------------------------------------

    def setup(self, *, force: bool = False, progress: Progress | None = _stderr_progress) -> dict[str, Any]:
        """Build the sysroot if it is not already there (idempotent). Returns the stamp."""
        say = progress or (lambda _m: None)
        if not force and self.ready():
            say(f"qemu-arm64: sysroot ready at {self.root} (nothing to do)")
            return self.stamp() or {}
        self._check_host_tools()
        self.cache.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.cache / ".lock"):
            if not force and self.ready():  # another process finished it while we waited
                return self.stamp() or {}
            t_all = time.monotonic()
            steps = 6
            mirror, keyring = find_debian_mirror()
            with _step(say, 1, steps, f"apt index for {SUITE}/{DEB_ARCH} from the host's Debian mirror"):
                apt_opts = self._apt_config(mirror, keyring)
                self._apt_update(apt_opts)
            with _step(say, 2, steps, f"resolving and downloading the {DEB_ARCH} debs of {PYTHON}"):
                debs = self._apt_download(apt_opts)
            partial = self.cache / "sysroot.partial"
            if partial.exists():
                shutil.rmtree(partial)
            with _step(say, 3, steps, f"unpacking {len(debs)} debs into the sysroot"):
                self._unpack_debs(debs, partial)
            with _step(say, 4, steps, f"downloading the {WHEEL_PLATFORM} wheels ({', '.join(WHEEL_SPECS)})"):
                wheels = self._download_wheels()
            with _step(say, 5, steps, f"installing {len(wheels)} wheels into {SITE_REL}"):
                self._install_wheels(wheels, partial / SITE_REL)
            with _step(say, 6, steps, "smoke run: importing the runtime under qemu-aarch64 (compiles bytecode)"):
                staged = Sysroot(self.cache)
                staged.root = partial
                t0 = time.monotonic()
                staged.runner_info()
                first_start_s = time.monotonic() - t0
                t0 = time.monotonic()
                info = staged.runner_info()
                startup_s = time.monotonic() - t0
            stamp = {
                "format": STAMP_FORMAT, "key": config_key(), "suite": SUITE, "arch": DEB_ARCH,
                "mirror": mirror, "debs": [d.name for d in debs], "wheels": [w.name for w in wheels],
                "python": f"usr/bin/{PYTHON}", "site": SITE_REL, "info": info,
                "qemu": qemu_version(), "startup_s": round(startup_s, 2), "first_start_s": round(first_start_s, 2),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build_s": round(time.monotonic() - t_all, 1),
            }
            (partial / STAMP_NAME).write_text(json.dumps(stamp, indent=1))
            old = self.cache / "sysroot.old"
            if old.exists():
                shutil.rmtree(old)
            if self.root.exists():
                self.root.rename(old)
            partial.rename(self.root)
            if old.exists():
                shutil.rmtree(old)
            say(f"qemu-arm64: sysroot ready at {self.root} in {stamp['build_s']} s "
                f"(ExecuTorch runtime {info.get('et_version')}, emulated start-up {startup_s:.1f} s)")
            return stamp

    def runner_info(self) -> dict[str, Any]:
        proc = self.run_python(str(RUNNER_SCRIPT), "--info", what="smoke run of the emulated runtime")
        return parse_ok_line(proc.stdout, "qemu-arm64 runner --info")

    @staticmethod
    def _check_host_tools() -> None:
        missing = [t for t in ("apt-get", "dpkg-deb") if shutil.which(t) is None]
        if missing:
            raise PocketVQEError(
                f"building the qemu-arm64 sysroot needs {', '.join(missing)} (a Debian/Ubuntu host): "
                "run it on such a host, or copy a built sysroot into the cache folder")
        if shutil.which(QEMU) is None:
            raise PocketVQEError(f"`{QEMU}` is not installed: run `apt-get install qemu-user` (Debian/Ubuntu)")

    def _apt_config(self, mirror: str, keyring: str | None) -> list[str]:
        a = self.apt
        for d in (a / "lists" / "partial", a / "archives" / "partial", a / "cache", a / "empty.d"):
            d.mkdir(parents=True, exist_ok=True)
        (a / "status").touch()
        (a / "preferences").touch()
        keyring = keyring or "/usr/share/keyrings/debian-archive-keyring.gpg"
        signed = f" signed-by={keyring}" if Path(keyring).exists() else ""
        (a / "sources.list").write_text(f"deb [arch={DEB_ARCH}{signed}] {mirror} {SUITE} main\n")
        opts = {
            "Dir::Etc::SourceList": a / "sources.list",
            "Dir::Etc::SourceParts": a / "empty.d",
            "Dir::Etc::Preferences": a / "preferences",
            "Dir::Etc::PreferencesParts": a / "empty.d",
            "Dir::State": a,
            "Dir::State::Lists": a / "lists",
            "Dir::State::status": a / "status",
            "Dir::Cache": a / "cache",
            "Dir::Cache::archives": a / "archives",
            "APT::Architecture": DEB_ARCH,
            "APT::Architectures": DEB_ARCH,
            "APT::Install-Recommends": "false",
            "APT::Install-Suggests": "false",
            "Acquire::Languages": "none",
            "Debug::NoLocking": "true",
        }
        if os.geteuid() == 0:
            opts["APT::Sandbox::User"] = "root"  # the private folders are root's, not _apt's
        return [x for k, v in opts.items() for x in ("-o", f"{k}={v}")]

    def _apt_update(self, opts: list[str]) -> None:
        fresh = self.apt / "lists" / ".updated"
        if fresh.exists() and time.time() - fresh.stat().st_mtime < 7 * 86400 and any((self.apt / "lists").glob("*Packages*")):
            return
        run_cmd(["apt-get", *opts, "-q", "update"], what=f"apt-get update for {SUITE}/{DEB_ARCH}", timeout=900,
                fix="check that this machine reaches its Debian mirror (`apt-get update` works), then run the setup again")
        fresh.touch()

    def _apt_download(self, opts: list[str]) -> list[Path]:
        sim = run_cmd(["apt-get", *opts, "-s", "-q", "install", *DEB_PACKAGES], what="resolving the arm64 packages",
                      timeout=300, fix="run `pocketvqe device setup qemu-arm64 --force` to refresh the apt index")
        wanted = re.findall(r"^Inst (\S+) \((\S+) [^)]*\[(\S+)\]\)", sim.stdout, flags=re.M)
        if not wanted:
            raise PocketVQEError(f"apt resolved no packages for {', '.join(DEB_PACKAGES)}:\n{sim.stdout[-2000:]}\n"
                                 "run `pocketvqe device setup qemu-arm64 --force` to refresh the apt index")
        archives = self.apt / "archives"
        files = [archives / f"{pkg.split(':')[0]}_{ver.replace(':', '%3a')}_{arch}.deb" for pkg, ver, arch in wanted]
        if not all(f.exists() for f in files):
            run_cmd(["apt-get", *opts, "-y", "-q", "--download-only", "install", *DEB_PACKAGES],
                    what=f"downloading {len(files)} arm64 debs", timeout=1800,
                    fix="check that this machine reaches its Debian mirror, then run the setup again")
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise PocketVQEError(f"apt did not download {', '.join(missing)}: run the setup again with --force")
        return files

    @staticmethod
    def _unpack_debs(debs: Sequence[Path], dest: Path) -> None:
        dest.mkdir(parents=True)
        for deb in debs:
            run_cmd(["dpkg-deb", "-x", str(deb), str(dest)], what=f"unpacking {deb.name}",
                    fix="delete the cache folder's apt/archives and run the setup again")
        usr = dest / "usr"
        for d in ("bin", "sbin", "lib"):
            top = dest / d
            if top.is_dir() and not top.is_symlink():  # a package still shipping /lib: merge it into /usr
                for item in top.iterdir():
                    target = usr / d / item.name
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        item.rename(target)
                shutil.rmtree(top)
            if not top.exists() and not top.is_symlink():
                (usr / d).mkdir(parents=True, exist_ok=True)
                top.symlink_to(f"usr/{d}")
        if not (dest / "usr" / "bin" / PYTHON).exists():
            raise PocketVQEError(f"the unpacked debs hold no usr/bin/{PYTHON}: run the setup again with --force")

    def _download_wheels(self) -> list[Path]:
        self.wheels.mkdir(parents=True, exist_ok=True)
        record = self.wheels / "wheels.json"
        with contextlib.suppress(OSError, ValueError):
            rec = json.loads(record.read_text())
            if rec.get("key") == config_key() and all((self.wheels / w).exists() for w in rec["files"]):
                return [self.wheels / w for w in rec["files"]]
        with tempfile.TemporaryDirectory(dir=self.cache) as tmp:
            run_cmd([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                     "--only-binary=:all:", "--platform", WHEEL_PLATFORM, "--python-version", WHEEL_PYTHON,
                     "--implementation", "cp", "-d", tmp, *WHEEL_SPECS],
                    what="downloading the aarch64 wheels", timeout=1800,
                    fix="check that pip reaches the package index (`pip download numpy` works), then run the setup again")
            files = sorted(Path(tmp).glob("*.whl"))
            if not files:
                raise PocketVQEError("pip downloaded no wheels: run the setup again")
            for f in files:
                os.replace(f, self.wheels / f.name)
        names = [f.name for f in files]
        record.write_text(json.dumps({"key": config_key(), "files": names}))
        return [self.wheels / n for n in names]

    @staticmethod
    def _install_wheels(wheels: Sequence[Path], site: Path) -> None:
        site.mkdir(parents=True, exist_ok=True)
        for whl in wheels:
            with zipfile.ZipFile(whl) as zf:
                zf.extractall(site)
            for data in site.glob("*.data"):
                for sub in ("purelib", "platlib"):
                    src = data / sub
                    if src.is_dir():
                        for item in src.iterdir():
                            dst = site / item.name
                            if dst.exists():
                                shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
                            item.rename(dst)
                shutil.rmtree(data)


@contextlib.contextmanager
def _step(say: Progress, i: int, n: int, what: str):
    say(f"[qemu-arm64 setup {i}/{n}] {what} ...")
    t0 = time.monotonic()
    yield
    say(f"[qemu-arm64 setup {i}/{n}] done in {time.monotonic() - t0:.1f} s")


@contextlib.contextmanager
def _file_lock(path: Path):
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def qemu_version() -> str | None:
    exe = shutil.which(QEMU)
    if not exe:
        return None
    with contextlib.suppress(Exception):
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
        m = re.search(r"version (\S+)", out)
        return m.group(1) if m else out.strip().splitlines()[0]
    return None
