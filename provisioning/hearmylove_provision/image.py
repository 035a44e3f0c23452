"""Build the SD image from Debian packages and PyPI wheels alone, reproducibly from image.toml.

Stages: preflight (tools, arm64 emulation, disk space), wheels (the daemon's exact host
versions, downloaded as aarch64 wheels; pure-Python sdists built into wheels here), models
(exported on the host: they do not depend on the architecture), rootfs (mmdebstrap arm64
under qemu-user, then image-customize.sh inside it), partitions (FAT with mkfs.vfat +
mcopy, ext4 with mkfs.ext4 -d: no loop mounts), assemble (sfdisk, then both copied in at
their offsets). Times, ids and file systems follow SOURCE_DATE_EPOCH.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ToolError
from .fatfs import run, tool
from .rootfiles import REPO, root_files

log = logging.getLogger(__name__)
Progress = Callable[[str, float], None]
FIRMWARE_START_MIB = 4
# Rough share of the build's time per stage, for the overall percentage.
WEIGHTS = {"preflight": 1, "wheels": 4, "models": 5, "rootfs": 70, "partitions": 12, "assemble": 8}


class Debian(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    suite: str
    mirror: str
    security_mirror: str | None = None
    components: list[str]
    architecture: str = "arm64"
    variant: str = "minbase"
    packages: list[str]


class ImageSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    size_mib: int = Field(ge=1024)
    firmware_mib: int = Field(ge=64, le=1024)
    hostname: str = Field(pattern=r"^[a-z0-9-]{1,63}$")
    source_date_epoch: int = Field(gt=0)
    root_label: str = Field(max_length=16)
    firmware_label: str = Field(max_length=11)


class PythonSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    version: str = Field(pattern=r"^3\.\d+$")
    platforms: list[str]
    extra: list[str] = []
    exclude: list[str] = []


class ImageConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    debian: Debian
    image: ImageSpec
    python: PythonSpec


def load_config(path: Path) -> ImageConfig:
    try:
        return ImageConfig(**tomllib.loads(Path(path).read_text()))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ToolError(f"image config {str(path)!r} cannot be read: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:8])
        raise ToolError(f"image config {str(path)!r} is invalid: {problems}") from None


class Stages:
    """Turns (stage, fraction within it) into the overall percentage the user sees."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.total = sum(WEIGHTS.values())
        self.timings: dict[str, float] = {}
        self._began = time.monotonic()
        self._current = ""
        self._fraction = 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        if stage != self._current:
            now = time.monotonic()
            if self._current:
                self.timings[self._current] = now - self._began
            self._began, self._current, self._fraction = now, stage, 0.0
        fraction = self._fraction = max(fraction, self._fraction)  # a repeated log line never moves it back
        done = sum(w for s, w in WEIGHTS.items() if list(WEIGHTS).index(s) < list(WEIGHTS).index(stage))
        self.progress(stage, (done + WEIGHTS[stage] * min(max(fraction, 0.0), 1.0)) / self.total)

    def finish(self) -> None:
        self.timings[self._current] = time.monotonic() - self._began


# -- preflight ---------------------------------------------------------------------------------


def _can_run_arm64() -> str | None:
    """None when arm64 binaries run here (binfmt_misc + qemu-user-static), else why not."""
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not Path("/proc/sys/fs/binfmt_misc/status").exists():
        return "binfmt_misc is not mounted (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)"
    if not entry.exists():
        return "no qemu-aarch64 binfmt handler (apt-get install qemu-user-static binfmt-support)"
    text = entry.read_text()
    if "enabled" not in text.splitlines()[0]:
        return "the qemu-aarch64 binfmt handler is disabled (update-binfmts --enable qemu-aarch64)"
    flags = next((line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags:")), "")
    if "F" not in flags:
        return "the qemu-aarch64 handler lacks the F flag, so it cannot work in a chroot (use qemu-user-static)"
    return None


def preflight(config: ImageConfig, out: Path, work: Path) -> None:
    """Fail before any work with a message that says what to install or free."""
    if os.geteuid() != 0:
        raise ToolError("building the image needs root (mmdebstrap --mode=root, file ownership in the root tree)")
    for name, package in (
        ("mmdebstrap", "mmdebstrap"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("sfdisk", "fdisk"),
        ("mkfs.ext4", "e2fsprogs"),
    ):
        tool(name, package)
    if shutil.which("qemu-aarch64-static") is None and not Path("/usr/libexec/qemu-binfmt/aarch64-binfmt-P").exists():
        raise ToolError("qemu-aarch64-static is missing; install it with: apt-get install qemu-user-static")
    if (why := _can_run_arm64()) is not None:
        raise ToolError(f"cannot run arm64 programs here: {why}")
    for folder in (work, out.parent):
        folder.mkdir(parents=True, exist_ok=True)
    need = (3 * config.image.size_mib) << 20
    free = shutil.disk_usage(work).free
    if free < need:
        raise ToolError(f"not enough disk space in {work}: {free >> 20} MiB free, the build needs {need >> 20} MiB")


# -- wheels -------------------------------------------------------------------------------------


def _target_env(version: str) -> dict[str, str]:
    return {
        "platform_machine": "aarch64",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "python_version": version,
        "python_full_version": f"{version}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def pinned_requirements(config: ImageConfig, root: str = "hearmylove") -> list[str]:
    """The daemon's runtime dependency closure at the exact versions installed (and tested) here."""
    env = _target_env(config.python.version)
    excluded = {canonicalize_name(n) for n in config.python.exclude}
    pins: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        dist = importlib.metadata.distribution(name)
        for line in dist.requires or []:
            req = Requirement(line)
            wanted = any(req.marker is None or req.marker.evaluate({**env, "extra": e}) for e in extras | {""})
            if not wanted or canonicalize_name(req.name) in excluded:
                continue
            key = canonicalize_name(req.name)
            pins[key] = importlib.metadata.version(req.name)
            todo.append((req.name, frozenset(req.extras)))
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def fetch_wheels(config: ImageConfig, dest: Path, progress: Progress) -> list[str]:
    """Project wheel plus aarch64 wheels of every pin; pure-Python sdists become wheels here."""
    dest.mkdir(parents=True, exist_ok=True)
    run(_pip("wheel", "-q", "--no-deps", "-w", str(dest), str(REPO)), "building the project's wheel")
    progress("wheels", 0.1)
    pins = pinned_requirements(config) + config.python.extra
    lock = dest / "requirements.lock"
    lock.write_text("\n".join(pins) + "\n")
    platform_args = [a for p in config.python.platforms for a in ("--platform", p)]
    abi = "cp" + config.python.version.replace(".", "")
    download = _pip("download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(dest), "--find-links", str(dest))
    download += [*platform_args, "--python-version", config.python.version, "--implementation", "cp"]
    download += ["--abi", abi, "--abi", "abi3", "--abi", "none", "-r", str(lock)]
    built: list[str] = []
    for _ in range(len(pins) + 1):
        result = subprocess.run(download, capture_output=True, text=True)
        if result.returncode == 0:
            progress("wheels", 1.0)
            return built
        missing = re.search(r"No matching distribution found for (\S+)", result.stderr)
        if missing is None:
            raise ToolError(f"downloading aarch64 wheels failed: {result.stderr.strip()[-2000:]}")
        spec = missing.group(1)
        run(_pip("wheel", "-q", "--no-deps", "--no-binary", ":all:", "-w", str(dest), spec), f"building {spec}")
        name = canonicalize_name(spec.split("==")[0]).replace("-", "_")
        wheels = [w for w in dest.glob("*.whl") if canonicalize_name(w.name.split("-")[0]).replace("-", "_") == name]
        if not any(w.name.endswith("-none-any.whl") for w in wheels):
            raise ToolError(f"{spec} has no aarch64 wheel on PyPI and is not pure Python; pin another version")
        built.append(spec)
        progress("wheels", 0.1 + 0.8 * len(built) / len(pins))
    raise ToolError("downloading aarch64 wheels did not converge")


# -- root file system -----------------------------------------------------------------------------

_MMDEBSTRAP_STEPS = [
    ("setting up", 0.02),
    ("running apt-get update", 0.04),
    ("downloading packages", 0.08),
    ("extracting archives", 0.2),
    ("installing essential packages", 0.25),
    ("installing remaining packages", 0.35),
    ("running --customize-hook", 0.6),
]
_CUSTOMIZE_STEPS = {"users": 0.6, "files": 0.62, "venv": 0.63, "firmware": 0.85, "models": 0.88, "units": 0.93}
_CUSTOMIZE_STEPS["cleanup"] = 0.96


def payload(config: ImageConfig, wheels: Path, models: Path, folder: Path) -> Path:
    """What the customize hook copies in: files over /, wheels, models and the script."""
    if folder.exists():
        shutil.rmtree(folder)
    files = folder / "files"
    for rel, (content, mode) in root_files(
        config.image.hostname, config.image.root_label, config.image.firmware_label
    ).items():
        path = files / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        path.chmod(mode)
    shutil.copytree(wheels, folder / "wheels", ignore=shutil.ignore_patterns("requirements.lock"))
    shutil.copy(wheels / "requirements.lock", folder / "requirements.lock")
    shutil.copytree(models, folder / "models")
    shutil.copy(REPO / "provisioning" / "image-customize.sh", folder / "customize.sh")
    return folder


def rootfs(config: ImageConfig, payload_dir: Path, root: Path, progress: Progress, log_file: Path) -> None:
    """mmdebstrap the arm64 root with the payload applied inside it; its output goes to log_file."""
    if root.exists():
        shutil.rmtree(root)
    deb = config.debian
    components = " ".join(deb.components)
    sources = [f"deb {deb.mirror} {deb.suite} {components}", f"deb {deb.mirror} {deb.suite}-updates {components}"]
    if deb.security_mirror:
        sources.append(f"deb {deb.security_mirror} {deb.suite}-security {components}")
    args = [tool("mmdebstrap", "mmdebstrap"), "--mode=root", f"--variant={deb.variant}"]
    args += [f"--architectures={deb.architecture}", f"--components={','.join(deb.components)}"]
    args += [f"--include={','.join(deb.packages)}", '--aptopt=Acquire::Retries "3"']
    args += ['--setup-hook=mkdir -p "$1/boot/firmware"']
    args += [f'--customize-hook=mkdir -p "$1/tmp/hml-payload" && cp -a {payload_dir}/. "$1/tmp/hml-payload/"']
    args += ['--customize-hook=chroot "$1" /bin/sh /tmp/hml-payload/customize.sh']
    args += ['--customize-hook=rm -rf "$1/tmp/hml-payload"']
    args += [deb.suite, str(root), *sources]
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(config.image.source_date_epoch), "LC_ALL": "C.UTF-8"}
    with open(log_file, "w") as logf:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert process.stdout is not None
        tail: list[str] = []
        for line in process.stdout:
            logf.write(line)
            tail = (tail + [line.rstrip()])[-30:]
            low = line.lower()
            for text, fraction in _MMDEBSTRAP_STEPS:
                if low.startswith("i: ") and text in low:
                    progress("rootfs", fraction)
            if line.startswith("HML-STAGE "):
                progress("rootfs", _CUSTOMIZE_STEPS.get(line.split()[1], 0.6))
        if process.wait() != 0:
            raise ToolError(f"mmdebstrap failed (exit {process.returncode}); see {log_file}:\n" + "\n".join(tail))
    progress("rootfs", 1.0)


# -- partitions and image -----------------------------------------------------------------------


def _clamp_times(root: Path, epoch: int) -> None:
    """Every file time no later than SOURCE_DATE_EPOCH, so the file systems do not depend on when."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.lstat(path).st_mtime > epoch:
                os.utime(path, (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))


def _ids(config: ImageConfig) -> tuple[str, str, str]:
    """Root file-system UUID, FAT volume id and MBR disk id, derived from the config (stable)."""
    seed = hashlib.sha256(config.model_dump_json().encode()).digest()
    return str(uuid.UUID(bytes=seed[:16], version=4)), seed[16:20].hex(), "0x" + seed[20:24].hex()


def partitions(config: ImageConfig, root: Path, work: Path, progress: Progress) -> tuple[Path, Path]:
    """The FAT and ext4 partitions as files, built from the root tree without mounting anything."""
    spec, epoch = config.image, config.image.source_date_epoch
    firmware_tree = work / "firmware"
    if firmware_tree.exists():
        shutil.rmtree(firmware_tree)
    firmware_tree.mkdir()
    for entry in (root / "boot" / "firmware").iterdir():
        shutil.move(str(entry), firmware_tree / entry.name)
    if not (firmware_tree / "config.txt").exists():
        raise ToolError("raspi-firmware wrote no config.txt into /boot/firmware; see the mmdebstrap log")
    _clamp_times(firmware_tree, epoch)
    _clamp_times(root, epoch)
    progress("partitions", 0.05)
    root_uuid, fat_id, _ = _ids(config)
    fat = work / "firmware.vfat"
    fat.unlink(missing_ok=True)
    with open(fat, "wb") as f:
        f.truncate(spec.firmware_mib << 20)
    fixed = {"SOURCE_DATE_EPOCH": str(epoch)}  # dosfstools and mtools date what they create by it
    mkfs = [tool("mkfs.vfat", "dosfstools"), "-F", "32", "--invariant", "-n", spec.firmware_label, "-i", fat_id]
    run([*mkfs, str(fat)], "mkfs.vfat", env=fixed)
    entries = [str(p) for p in sorted(firmware_tree.iterdir())]
    run([tool("mcopy", "mtools"), "-s", "-m", "-i", str(fat), *entries, "::/"], "copying the firmware", env=fixed)
    progress("partitions", 0.2)
    ext4 = work / "root.ext4"
    ext4.unlink(missing_ok=True)
    root_mib = spec.size_mib - FIRMWARE_START_MIB - spec.firmware_mib
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(epoch)}
    args = [tool("mkfs.ext4", "e2fsprogs"), "-q", "-F", "-L", spec.root_label, "-U", root_uuid]
    args += ["-E", f"hash_seed={root_uuid},root_owner=0:0", "-d", str(root), str(ext4), f"{root_mib}M"]
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise ToolError(f"mkfs.ext4 -d failed: {result.stderr.strip()} (is the image size large enough?)")
    progress("partitions", 1.0)
    return fat, ext4


def _copy_sparse(src: Path, dest_fd: int, offset: int, progress: Callable[[float], None]) -> None:
    size, done, chunk = src.stat().st_size, 0, 4 << 20
    zero = bytes(chunk)
    with open(src, "rb") as f:
        while data := f.read(chunk):
            if data != zero[: len(data)]:
                os.pwrite(dest_fd, data, offset + done)
            done += len(data)
            progress(done / size)


def assemble(config: ImageConfig, fat: Path, ext4: Path, out: Path, progress: Progress) -> Path:
    """sfdisk an empty image of the configured size, then copy both partitions in at their offsets."""
    spec = config.image
    _, _, disk_id = _ids(config)
    tmp = out.with_name(out.name + ".partial")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as f:
        f.truncate(spec.size_mib << 20)
    first, fat_sectors = FIRMWARE_START_MIB << 11, spec.firmware_mib << 11
    table = f"label: dos\nlabel-id: {disk_id}\nstart={first}, size={fat_sectors}, type=c, bootable\n"
    table += f"start={first + fat_sectors}, type=83\n"
    run([tool("sfdisk", "fdisk"), "-q", "--no-reread", str(tmp)], "writing the partition table", input=table.encode())
    fd = os.open(tmp, os.O_WRONLY)
    try:
        fat_share = fat.stat().st_size / (fat.stat().st_size + ext4.stat().st_size)
        _copy_sparse(fat, fd, FIRMWARE_START_MIB << 20, lambda f: progress("assemble", f * fat_share))
        offset = (FIRMWARE_START_MIB + spec.firmware_mib) << 20
        _copy_sparse(ext4, fd, offset, lambda f: progress("assemble", fat_share + f * (1 - fat_share)))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.utime(tmp, (spec.source_date_epoch, spec.source_date_epoch))
    os.replace(tmp, out)
    return out


def _package_list(root: Path) -> str:
    result = subprocess.run(
        ["chroot", str(root), "dpkg-query", "-W", "-f", "${Package} ${Version} ${Architecture}\n"],
        capture_output=True,
        text=True,
    )
    return result.stdout


def build(config_path: Path, out: Path, work: Path | None, progress: Progress, keep_root: bool = False) -> Path:
    """The whole build; writes OUT, OUT.packages (Debian versions), OUT.requirements (wheels), OUT.sha256."""
    from hearmylove.basemodel import BASE_MODEL_NAME
    from voicelab.build import build as build_models

    if os.nice(0) < 10:  # the heavy part (qemu-user, mkfs) must not starve other work on the machine
        os.nice(10 - os.nice(0))
    config = load_config(config_path)
    out = Path(out).resolve()
    work = Path(work or out.parent / f"{out.stem}-work").resolve()
    stages = Stages(progress)
    stages("preflight", 0.0)
    preflight(config, out, work)
    stages("wheels", 0.0)
    wheels = work / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    built = fetch_wheels(config, wheels, stages)
    if built:
        log.info("built pure-Python wheels from sdists: %s", ", ".join(built))
    stages("models", 0.0)
    models = work / "models"
    shutil.rmtree(models, ignore_errors=True)
    # Every vocoder the speaker may run is built here, in minutes, never on the Pi: it verifies and loads.
    build_models(models / BASE_MODEL_NAME, keep_whole=False, progress=lambda m: log.info("%s", m))
    stages("rootfs", 0.0)
    root = work / "root"
    rootfs(config, payload(config, wheels, models, work / "payload"), root, stages, work / "mmdebstrap.log")
    packages = _package_list(root)
    stages("partitions", 0.0)
    fat, ext4 = partitions(config, root, work, stages)
    stages("assemble", 0.0)
    assemble(config, fat, ext4, out, stages)
    stages.finish()
    Path(f"{out}.packages").write_text(packages)
    shutil.copy(wheels / "requirements.lock", f"{out}.requirements")
    digest = hashlib.sha256()
    with open(out, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    Path(f"{out}.sha256").write_text(f"{digest.hexdigest()}  {out.name}\n")
    timings = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in stages.timings.items())
    log.info("stage times: %s", timings)
    for leftover in (fat, ext4, work / "payload", work / "firmware", *([] if keep_root else [root])):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink(missing_ok=True)
    return out
