"""Debian packages without root: ``apt-get download`` + ``dpkg-deb -x``, and the command-line tools the corpus needs.

The machine's own apt configuration is tried first (it works without root once someone ran
``apt-get update``). When it cannot find a package, a private apt configuration is made under
``<cache>/apt``: its sources are copied from this machine's ``/etc/apt`` files (no mirror is
named here), with its own lists and cache folders, so ``apt-get update`` needs no root either.

>>> debs = fetch_debs(["asterisk-core-sounds-en-g722"], Path("/tmp/c/debs"))   # doctest: +SKIP
>>> tree = extract_debs(debs, Path("/tmp/c/x"))                               # doctest: +SKIP
>>> flite = find_tool("flite", Path("/tmp/c"))                                # doctest: +SKIP
>>> subprocess.run(flite.argv + ["-voice", "slt", "-t", "hi", "-o", "hi.wav"], env=flite.env)  # doctest: +SKIP
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PocketVQEError

APT_SOURCE_FILES = ("/etc/apt/sources.list",)
APT_SOURCE_DIR = "/etc/apt/sources.list.d"
# Packages holding each tool, for running it from an extracted tree when it is not installed.
TOOL_DEBS = {
    "flite": ["flite", "libflite1"],
    "espeak-ng": ["espeak-ng", "libespeak-ng1", "espeak-ng-data", "libpcaudio0", "libsonic0"],
}
INSTALL_HINT = {
    "ffmpeg": "install it (`apt-get install ffmpeg`, or `pip install imageio-ffmpeg`)",
    "flite": "install it (`apt-get install flite`) or let apt-get download work",
    "espeak-ng": "install it (`apt-get install espeak-ng`) or let apt-get download work",
    "text2wave": "install festival and voices (`apt-get install festival festvox-kallpc16k "
                 "festvox-kdlpc16k festvox-us-slt-hts`) or leave the festival source out",
}


@dataclass(frozen=True)
class Tool:
    """A runnable program: ``argv`` prefix plus the environment it needs (``LD_LIBRARY_PATH`` when extracted)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    extracted: bool = False

    def run(self, args: list[str], *, what: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run the tool; a failure raises PocketVQEError with its stderr."""
        proc = subprocess.run(self.argv + list(args), env=self.env, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()[-800:]
            raise PocketVQEError(f"{what} failed ({Path(self.argv[0]).name} exit {proc.returncode}): {err}")
        return proc


def _apt_env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}


def _private_apt_options(apt_dir: Path) -> list[str]:
    return [
        "-o", f"Dir::Etc::SourceList={apt_dir / 'sources.list'}",
        "-o", f"Dir::Etc::SourceParts={apt_dir / 'sources.list.d'}",
        "-o", f"Dir::State={apt_dir / 'state'}",
        "-o", f"Dir::State::Lists={apt_dir / 'lists'}",
        "-o", f"Dir::State::status={apt_dir / 'status'}",
        "-o", f"Dir::Cache={apt_dir / 'cache'}",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Sandbox::User=" + ("root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")),
    ]


def write_private_apt_config(apt_dir: Path) -> list[str]:
    """Copy this machine's apt sources into ``apt_dir`` and make its folders; return the apt-get options.

    Only sources the machine itself uses are copied (``sources.list`` and ``*.list``/``*.sources``
    files); their URIs are left as they are.
    """
    parts = apt_dir / "sources.list.d"
    for sub in (parts, apt_dir / "state", apt_dir / "lists" / "partial", apt_dir / "cache" / "archives" / "partial"):
        sub.mkdir(parents=True, exist_ok=True)
    (apt_dir / "status").touch()
    found = 0
    for src in APT_SOURCE_FILES:
        if os.path.isfile(src):
            shutil.copyfile(src, apt_dir / "sources.list")
            found += 1
    if not (apt_dir / "sources.list").exists():
        (apt_dir / "sources.list").write_text("")
    for src in sorted(glob.glob(os.path.join(APT_SOURCE_DIR, "*"))):
        if src.endswith((".list", ".sources")) and os.path.isfile(src):
            shutil.copyfile(src, parts / os.path.basename(src))
            found += 1
    if not found:
        raise PocketVQEError("no apt sources found in /etc/apt: this needs a Debian/Ubuntu machine, "
                             "or give your own corpus with --speech/--noise")
    return _private_apt_options(apt_dir)


def _download(pkgs: list[str], dest: Path, options: list[str]) -> tuple[bool, str]:
    proc = subprocess.run(["apt-get", *options, "download", *pkgs], cwd=dest, env=_apt_env(),
                          capture_output=True, stdin=subprocess.DEVNULL)
    return proc.returncode == 0, proc.stderr.decode(errors="replace")


def _debs_for(pkgs: list[str], dest: Path) -> list[Path]:
    out = []
    for p in pkgs:
        hits = sorted(dest.glob(f"{p}_*.deb"))
        if not hits:
            raise PocketVQEError(f"apt-get download left no .deb for {p} in {dest}")
        out.append(hits[-1])
    return out


def fetch_debs(pkgs: list[str], dest: Path, *, apt_dir: Path | None = None, private: bool = False) -> list[Path]:
    """Download ``pkgs`` (binary .deb files) into ``dest`` and return their paths; cached files are reused.

    ``private=True`` skips the machine's apt lists and uses the private configuration in ``apt_dir``.
    """
    if shutil.which("apt-get") is None:
        raise PocketVQEError("apt-get not found: the built-in corpus needs Debian packages; on another system "
                             "give your own corpus with --speech DIR --noise DIR")
    dest.mkdir(parents=True, exist_ok=True)
    missing = [p for p in pkgs if not list(dest.glob(f"{p}_*.deb"))]
    if missing and not private:
        ok, err = _download(missing, dest, [])
        if ok:
            missing = []
    if missing:
        apt_dir = apt_dir or dest.parent / "apt"
        options = write_private_apt_config(apt_dir)
        if not any((apt_dir / "lists").glob("*Packages*")):
            subprocess.run(["apt-get", *options, "-q", "update"], env=_apt_env(), capture_output=True,
                           stdin=subprocess.DEVNULL)  # errors of unrelated sources are tolerated: download decides
        ok, err = _download(missing, dest, options)
        if not ok:
            raise PocketVQEError(f"apt-get download {' '.join(missing)} failed: {err.strip()[-500:]}\n"
                                 "fix: check the network access to the Debian archive, or give your own corpus "
                                 "with --speech/--noise and leave the Debian sources out (--sources)")
    return _debs_for(pkgs, dest)


def extract_debs(debs: list[Path], dest: Path) -> Path:
    """Unpack .deb files into ``dest`` with ``dpkg-deb -x`` (no root) and return ``dest``."""
    if shutil.which("dpkg-deb") is None:
        raise PocketVQEError("dpkg-deb not found: install dpkg, or give your own corpus with --speech/--noise")
    dest.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True)
        if proc.returncode != 0:
            raise PocketVQEError(f"dpkg-deb -x {deb} failed: {proc.stderr.decode(errors='replace')[-300:]}; "
                                 f"delete {deb} and run again")
    return dest


def find_tool(name: str, cache: Path, *, allow_system: bool = True) -> Tool:
    """Locate ``name`` (ffmpeg, flite, espeak-ng, text2wave): on PATH, else from extracted Debian packages.

    ``cache`` holds downloaded packages (``cache/debs``) and the extracted tools (``cache/tools``).
    """
    system = shutil.which(name) if allow_system else None
    if system:
        return Tool([system])
    if name == "ffmpeg":
        try:
            import imageio_ffmpeg  # optional fallback that ships a static ffmpeg
            return Tool([imageio_ffmpeg.get_ffmpeg_exe()])
        except Exception:
            pass
    if name not in TOOL_DEBS:
        raise PocketVQEError(f"{name} not found on PATH: {INSTALL_HINT.get(name, 'install it')}")
    tree = cache / "tools" / name
    stamp = tree / ".extracted"
    if not stamp.exists():
        debs = fetch_debs(TOOL_DEBS[name], cache / "debs", apt_dir=cache / "apt")
        if tree.exists():
            shutil.rmtree(tree)
        extract_debs(debs, tree)
        stamp.touch()
    libdirs = [d for d in glob.glob(str(tree / "usr/lib/*")) if os.path.isdir(d)] + [str(tree / "usr/lib")]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libdirs + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))
    argv = [str(tree / "usr/bin" / name)]
    if name == "espeak-ng":
        data = glob.glob(str(tree / "usr/lib/*/espeak-ng-data"))
        if not data:
            raise PocketVQEError(f"espeak-ng-data missing in {tree}: delete {tree} and run again")
        argv.append(f"--path={os.path.dirname(data[0])}")
    return Tool(argv, env, extracted=True)
