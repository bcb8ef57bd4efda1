"""Write mobilecnn/data/imagenet_classes.json from the ImageNet sample file names.

The samples in ../shared/datasets/imagenet-samples/ are named
`<wnid>_<short name>.JPEG`, one per ILSVRC-2012 class. The class index is
the rank of the wnid among the 1,000 wnids sorted alphabetically, so the
list written here ([wnid, name] pairs) is in index order. Run once:

    python benchmarks/make_imagenet_classes.py [SAMPLES_DIR]
"""
import json
import os
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_SAMPLES = ROOT.parent / "shared" / "datasets" / "imagenet-samples"
OUT = ROOT / "mobilecnn" / "data" / "imagenet_classes.json"
NAME = re.compile(r"^(n\d{8})_(.+)\.jpe?g$", re.IGNORECASE)


def classes_from_folder(folder):
    pairs = {}
    for entry in os.listdir(folder):
        match = NAME.match(entry)
        if not match:
            continue
        wnid, name = match.groups()
        if wnid in pairs:
            raise SystemExit(f"{folder}: two files for wnid {wnid}")
        pairs[wnid] = name
    if len(pairs) != 1000:
        raise SystemExit(f"{folder}: expected 1000 '<wnid>_<name>.JPEG' files, found {len(pairs)}")
    return [[wnid, pairs[wnid]] for wnid in sorted(pairs)]


def main(argv):
    folder = pathlib.Path(argv[1]) if len(argv) > 1 else DEFAULT_SAMPLES
    if not folder.is_dir():
        raise SystemExit(f"{folder} not found: pass the imagenet-samples folder")
    classes = classes_from_folder(folder)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text("[\n" + ",\n".join(json.dumps(pair) for pair in classes) + "\n]\n")
    os.replace(tmp, OUT)
    print(f"wrote {len(classes)} classes to {OUT}")


if __name__ == "__main__":
    main(sys.argv)
