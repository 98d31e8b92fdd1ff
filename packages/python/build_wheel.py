#!/usr/bin/env python3
"""Writes the sqlite-tether wheel (a zip, as the wheel spec describes it) with the standard
library only, so it builds offline from Debian's /usr/bin/python3. Called by scripts/package.sh.

Usage: build_wheel.py --version V --license SPDX --library PATH --platform TAG --out DIR
                      [--license-file PATH] [--epoch SECONDS]
Prints the wheel's path.
"""

import argparse
import base64
import hashlib
import os
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
DIST = "sqlite-tether"
PACKAGE = "sqlite_tether"
# Native libraries come from --library only: one left in the source dir (a copied build, another
# platform's) is never packaged, or the wheel would hold two entries of the same name.
NATIVE = (".so", ".dylib", ".dll")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", required=True)
    parser.add_argument("--license", required=True)
    parser.add_argument("--library", required=True, help="the built libtether.so (or .dylib, tether.dll)")
    parser.add_argument("--platform", required=True, help="e.g. manylinux_2_34_x86_64")
    parser.add_argument("--out", required=True)
    parser.add_argument("--license-file")
    parser.add_argument("--epoch", type=int, default=315532800, help="timestamp of every entry")
    args = parser.parse_args()

    tag = f"py3-none-{args.platform}"
    dist_info = f"{PACKAGE}-{args.version}.dist-info"
    readme = open(os.path.join(HERE, "README.md"), encoding="utf-8").read()
    metadata = "\n".join([
        "Metadata-Version: 2.1",
        f"Name: {DIST}",
        f"Version: {args.version}",
        "Summary: The tether SQLite extension (offline-first sync with a Tether server), prebuilt, with a loader",
        f"License: {args.license}",
        "Requires-Python: >=3.8",
        "Classifier: Programming Language :: Python :: 3",
        "Classifier: Operating System :: POSIX :: Linux",
        "Classifier: Topic :: Database",
        "Description-Content-Type: text/markdown",
        "",
        readme,
    ])
    wheel = "\n".join([
        "Wheel-Version: 1.0",
        "Generator: tether scripts/package.sh",
        "Root-Is-Purelib: false",
        f"Tag: {tag}",
        "",
    ])

    # (path in the wheel, bytes, executable)
    entries = []
    for name in sorted(os.listdir(os.path.join(HERE, PACKAGE))):
        path = os.path.join(HERE, PACKAGE, name)
        if not os.path.isfile(path) or name.endswith((".pyc", ".pyo")) or name.startswith("."):
            continue
        if name.endswith(NATIVE):
            print(f"build_wheel.py: skipping {path}: the wheel's library is --library {args.library}",
                  file=sys.stderr)
            continue
        entries.append((f"{PACKAGE}/{name}", read(path), False))
    entries.append((f"{PACKAGE}/{os.path.basename(args.library)}", read(args.library), True))
    if args.license_file:
        entries.append((f"{dist_info}/LICENSE", read(args.license_file), False))
    entries.append((f"{dist_info}/METADATA", metadata.encode(), False))
    entries.append((f"{dist_info}/WHEEL", wheel.encode(), False))
    entries.append((f"{dist_info}/top_level.txt", f"{PACKAGE}\n".encode(), False))

    names = [name for name, _, _ in entries]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        sys.exit(f"build_wheel.py: the wheel would hold these entries twice: {', '.join(twice)}")

    record = [f"{name},sha256={digest(data)},{len(data)}" for name, data, _ in entries]
    record.append(f"{dist_info}/RECORD,,")
    entries.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode(), False))

    os.makedirs(args.out, exist_ok=True)
    target = os.path.join(args.out, f"{PACKAGE}-{args.version}-{tag}.whl")
    stamp = time.gmtime(max(args.epoch, 315532800))[:6]  # zip cannot hold dates before 1980
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, executable in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
            archive.writestr(info, data)
    print(target)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


if __name__ == "__main__":
    main()
