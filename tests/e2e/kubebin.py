"""Find, unpack and verify the Kubernetes control-plane binaries the e2e tests run.

The binaries (etcd, kube-apiserver, kube-scheduler) come from ``KUBE_BIN_DIR`` (default
``.kube-bin`` in the repository). When that folder lacks them and ``../shared/kube-bin`` (or
``KUBE_BIN_SHARED``) holds the ``*.xz`` archives with ``SHA256SUMS``, they are unpacked into it and
checked against the digests. Binaries already in the default folder are re-checked (once per
change of ``SHA256SUMS``) and re-unpacked when they differ; a folder named by ``KUBE_BIN_DIR``
that holds all three is used as it is (other versions on purpose).

``python tests/e2e/kubebin.py prepare`` is what ``make e2e`` runs first: exit 0 when the binaries
are ready, 3 with a note saying what is needed when they are missing (``make e2e`` then stops
there, successfully), and 2 on a digest mismatch or when they are missing in CI (``CI=true``):
the e2e run is required there.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import sys
from pathlib import Path

BINARIES = ("etcd", "kube-apiserver", "kube-scheduler")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO / ".kube-bin"
DEFAULT_SHARED = REPO.parent / "shared" / "kube-bin"
STAMP = ".verified"
EXIT_READY, EXIT_FAILED, EXIT_SKIPPED = 0, 2, 3


class KubeBinMissing(RuntimeError):
    """The binaries are not available; the message says what is needed."""


def bin_dir() -> Path:
    """Where the binaries live: ``KUBE_BIN_DIR`` or ``<repo>/.kube-bin``."""
    env = os.environ.get("KUBE_BIN_DIR")
    return Path(env).expanduser().resolve() if env else DEFAULT_DIR


def shared_dir() -> Path:
    """Where the compressed originals live: ``KUBE_BIN_SHARED`` or ``<repo>/../shared/kube-bin``."""
    env = os.environ.get("KUBE_BIN_SHARED")
    return Path(env).expanduser().resolve() if env else DEFAULT_SHARED


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_sums(path: Path) -> dict[str, str]:
    """``SHA256SUMS`` as name -> hex digest."""
    sums: dict[str, str] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def _complete(directory: Path) -> bool:
    return all(os.access(directory / b, os.X_OK) for b in BINARIES)


def _missing_message(directory: Path, shared: Path) -> str:
    return (
        f"the e2e tests need etcd, kube-apiserver and kube-scheduler (linux x86-64): none in "
        f"{directory} and no archives in {shared}. Put the shared kube-bin folder (*.xz + "
        f"SHA256SUMS) at {shared}, or set KUBE_BIN_DIR=/path/to/dir holding the three "
        f"executables, then run `make e2e`"
    )


def prepare(directory: Path | None = None, shared: Path | None = None) -> Path:
    """Return a folder holding the three verified executables; unpack them first if needed.

    Raises :class:`KubeBinMissing` when neither the folder nor the shared archives exist, and
    ``ValueError`` when an unpacked binary does not match ``SHA256SUMS``.
    """
    user_dir = directory is None and bool(os.environ.get("KUBE_BIN_DIR"))
    directory = directory or bin_dir()
    shared = shared or shared_dir()
    sums_file = shared / "SHA256SUMS"
    sums = read_sums(sums_file) if sums_file.is_file() else {}
    stamp = directory / STAMP
    if _complete(directory):
        if not sums or user_dir:  # KUBE_BIN_DIR given and complete: the user's choice
            return directory
        wanted = "\n".join(f"{sums.get(b, '')}  {b}" for b in BINARIES)
        if stamp.is_file() and stamp.read_text() == wanted:
            return directory
        if all(_sha256(directory / b) == sums.get(b) for b in BINARIES):
            stamp.write_text(wanted)
            return directory
    archives = [shared / f"{b}.xz" for b in BINARIES]
    if not all(a.is_file() for a in archives) or not sums:
        if _complete(directory):
            raise ValueError(
                f"{directory}: binaries do not match {sums_file}; delete the folder to re-unpack"
            )
        raise KubeBinMissing(_missing_message(directory, shared))
    directory.mkdir(parents=True, exist_ok=True)
    if REPO in directory.parents:  # ~190 MB of executables must never be committed
        (directory / ".gitignore").write_text("*\n")
    for name, archive in zip(BINARIES, archives, strict=True):
        target = directory / name
        partial = target.with_suffix(".partial")
        with lzma.open(archive) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        got = _sha256(partial)
        if got != sums.get(name):
            partial.unlink()
            raise ValueError(
                f"{archive}: unpacked sha256 {got} does not match SHA256SUMS "
                f"({sums.get(name, 'no entry')}); the archive is damaged"
            )
        partial.chmod(0o755)
        partial.replace(target)
    stamp.write_text("\n".join(f"{sums[b]}  {b}" for b in BINARIES))
    return directory


def main(argv: list[str]) -> int:
    if argv[1:] != ["prepare"]:
        print("usage: python tests/e2e/kubebin.py prepare", file=sys.stderr)
        return EXIT_FAILED
    try:
        found = prepare()
    except KubeBinMissing as exc:
        if in_ci():
            print(f"e2e: FAILED (CI=true requires the e2e run): {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"e2e: SKIPPED, nothing was tested: {exc}", file=sys.stderr)
        return EXIT_SKIPPED
    except ValueError as exc:
        print(f"e2e: FAILED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"e2e: control-plane binaries ready in {found}")
    return EXIT_READY


if __name__ == "__main__":
    sys.exit(main(sys.argv))
