"""Carry a llama-cpp-python wheel slim: one copy of each file, the links recorded, xz-compressed.

Why: a wheel is a zip, and a zip holds no symlinks, so the CUDA wheel ``benchmarks.cuda_build``
makes stores every name of each shared library as a full copy (``libggml-cuda.so``,
``.so.0``, ``.so.0.25.3``, in ``llama_cpp/lib/`` and again in the top-level ``lib/`` that
llama.cpp's install adds): 252.7 MiB, ``libggml-cuda`` six times. The GPU check's device calls
carry at most 64 MiB each (issue 37).

``slim(wheel, target)`` writes a ``.tar.xz`` with

- ``slim.json``: the wheel's name and, in the wheel's order, every member with its mode,
  size, sha256 and, for a duplicate, the member it links to; the tools beside it;
- ``wheel/<member>``: each distinct content once, under its SONAME where it is a shared
  library with one (``libggml-cuda.so.0``), else under its shortest name inside the package;
  every other member with the same content as a relative symlink to it;
- ``tools/<name>``: executables and libraries carried beside the wheel (llama.cpp's
  llama-bench, llama-server and llama-quantize and the ``-impl`` libraries they need, which the
  wheel lacks), stripped with ``strip --strip-unneeded`` when ``strip`` is there.

``restore(slim, wheel_dir, tools_dir)`` unpacks it (tar re-creates the symlinks), checks every
member's sha256 through its link, and zips the tree back into the wheel in the recorded order,
each link as a copy of what it points to (what pip installs), so the restored wheel has the
original's members and contents (its RECORD holds) and ``pip install --no-index`` takes it. It
runs on the device with the system ``python3`` (stdlib only, no package index needed).

    python -m benchmarks.gpu.slim_wheel slim WHEEL OUT.tar.xz [--tools-from DIR --tool NAME ...]
    python -m benchmarks.gpu.slim_wheel restore OUT.tar.xz --wheel-dir DIR [--tools-dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

FORMAT = 1
MANIFEST = "slim.json"
#: A shared library's file name: ``libx.so``, ``libx.so.0``, ``libx.so.0.25.3``.
SHARED = re.compile(r"\.so(\.\d+)*$")
#: Smaller files are kept as they are: linking two empty ``py.typed`` files gains nothing.
MIN_LINK_BYTES = 1024


class SlimError(RuntimeError):
    """The slim bundle is not what ``slim`` wrote (a member missing or changed, a bad link)."""


def elf_dynamic(data: bytes) -> dict[str, list[str]]:
    """``SONAME`` and ``NEEDED`` of a 64-bit little-endian ELF file (empty lists otherwise).

    Read from the section headers (``strip`` keeps them): the ``SHT_DYNAMIC`` section's
    ``DT_SONAME`` (14) and ``DT_NEEDED`` (1) entries, named in the string table it links to.
    """
    found: dict[str, list[str]] = {"soname": [], "needed": []}
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return found
    shoff, = struct.unpack_from("<Q", data, 0x28)  # fmt: skip
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = []
    for index in range(shnum):
        base = shoff + index * shentsize
        if base + 0x40 > len(data):
            return found
        sh_type, = struct.unpack_from("<I", data, base + 4)  # fmt: skip
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        link, = struct.unpack_from("<I", data, base + 0x28)  # fmt: skip
        sections.append((sh_type, offset, size, link))
    for sh_type, offset, size, link in sections:
        if sh_type != 6 or link >= len(sections):  # SHT_DYNAMIC
            continue
        strtab = sections[link][1]
        for entry in range(offset, offset + size - 15, 16):
            tag, value = struct.unpack_from("<qQ", data, entry)
            if tag == 0:
                break
            if tag in (1, 14):
                end = data.index(b"\0", strtab + value)
                found["needed" if tag == 1 else "soname"].append(data[strtab + value : end].decode())
    return found


def keeper(paths: list[str], soname: str | None) -> str:
    """Which of the members with the same content stays a file: the one named as the SONAME
    (inside the package before the top-level ``lib/``), else the shortest name."""
    in_package = [p for p in paths if not p.startswith(("lib/", "bin/", "include/"))]
    pool = in_package or paths
    if soname:
        named = [p for p in pool if posixpath.basename(p) == soname]
        if named:
            return named[0]
    return min(pool, key=lambda p: (len(p), p))


def strip_copy(source: Path, target: Path) -> None:
    """``source`` copied to ``target``, stripped of what linking does not need (when ``strip`` is there)."""
    shutil.copy2(source, target)
    if shutil.which("strip"):
        subprocess.run(["strip", "--strip-unneeded", str(target)], check=True, capture_output=True)


def tool_closure(folder: Path, names: Iterable[str], provided: set[str]) -> list[str]:
    """``names`` and every library they need that ``folder`` has and the wheel does not provide."""
    wanted, todo = [], list(names)
    while todo:
        name = todo.pop(0)
        if name in wanted:
            continue
        path = folder / name
        if not path.exists():
            raise SlimError(f"{path} missing: the tools were not built there")
        wanted.append(name)
        needed = elf_dynamic(path.read_bytes())["needed"]
        todo += [n for n in needed if n not in provided and (folder / n).exists()]
    return wanted


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    archive.addfile(info, io.BytesIO(data))


def slim(
    wheel: Path, target: Path, tools_from: Path | None = None, tools: Iterable[str] = (), preset: int = 9
) -> dict[str, object]:
    """Write the slim bundle of ``wheel`` (and of ``tools`` from ``tools_from``) to ``target``; returns its manifest."""
    started = time.monotonic()
    with zipfile.ZipFile(wheel) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        digests: dict[str, str] = {}
        groups: dict[str, list[str]] = {}
        sonames: dict[str, str] = {}
        for info in infos:
            data = archive.read(info)
            digest = hashlib.sha256(data).hexdigest()
            digests[info.filename] = digest
            if info.file_size >= MIN_LINK_BYTES:
                groups.setdefault(digest, []).append(info.filename)
            if SHARED.search(info.filename) and digest not in sonames:
                sonames[digest] = next(iter(elf_dynamic(data)["soname"]), "")
        links: dict[str, str] = {}
        for digest, paths in groups.items():
            kept = keeper(paths, sonames.get(digest) or None)
            for path in paths:
                if path != kept:
                    links[path] = posixpath.relpath(kept, posixpath.dirname(path))
        members = [
            {
                "path": i.filename,
                "mode": (i.external_attr >> 16) & 0o7777 or 0o644,
                "size": i.file_size,
                "sha256": digests[i.filename],
                "link": links.get(i.filename),
            }
            for i in infos
        ]
        provided = {posixpath.basename(i.filename) for i in infos}
        tool_names = tool_closure(tools_from, tools, provided) if tools_from and tools else []
        target.parent.mkdir(parents=True, exist_ok=True)
        manifest: dict[str, object] = {
            "format": FORMAT,
            "wheel": wheel.name,
            "wheel_bytes": wheel.stat().st_size,
            "members": members,
            "tools": [],
        }
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(target, "w:xz", preset=preset) as out:
            tool_entries = []
            for name in tool_names:
                stripped = Path(tmp) / name
                strip_copy(tools_from / name, stripped)  # type: ignore[operator]
                data = stripped.read_bytes()
                tool_entries.append(
                    {
                        "name": name,
                        "mode": stripped.stat().st_mode & 0o7777,
                        "size": len(data),
                        "unstripped": (tools_from / name).stat().st_size,  # type: ignore[operator]
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                )
            manifest["tools"] = tool_entries
            _add_bytes(out, MANIFEST, json.dumps(manifest, indent=1).encode())
            for member in members:
                path = str(member["path"])
                info = tarfile.TarInfo(f"wheel/{path}")
                info.mtime = int(time.time())
                if member["link"]:
                    info.type, info.linkname = tarfile.SYMTYPE, str(member["link"])
                    out.addfile(info)
                    continue
                info.size, info.mode = int(member["size"]), int(member["mode"])  # type: ignore[call-overload]
                with archive.open(path) as source:
                    out.addfile(info, source)
            for entry in tool_entries:
                name = str(entry["name"])
                out.add(Path(tmp) / name, arcname=f"tools/{name}")
    manifest["slim_bytes"] = target.stat().st_size
    manifest["seconds"] = round(time.monotonic() - started, 1)
    return manifest


def restore(
    slim_file: Path, wheel_dir: Path, tools_dir: Path | None = None, compression: int = zipfile.ZIP_STORED
) -> Path:
    """Unpack ``slim_file``, re-create its links, check every member, and write the wheel into ``wheel_dir``.

    The wheel is written uncompressed by default (pip installs it the same, and on the device
    deflating 400 MB again would cost more than the bytes it saves on a local disk). The tools
    go into ``tools_dir`` when given. Returns the wheel's path.
    """
    wheel_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheel_dir, prefix=".slim-") as tmp:
        root = Path(tmp)
        with tarfile.open(slim_file, "r:xz") as archive:
            archive.extractall(root, filter="data")  # relative symlinks inside root stay symlinks
        try:
            manifest = json.loads((root / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise SlimError(f"{slim_file}: no readable {MANIFEST}") from exc
        if manifest.get("format") != FORMAT:
            raise SlimError(f"{slim_file}: format {manifest.get('format')}, this restore reads {FORMAT}")
        digests: dict[Path, str] = {}  # a content is hashed once, however many names it has

        def check(path: Path, sha256: str, what: str) -> None:
            real = path.resolve()
            if not real.is_file() or not real.is_relative_to(root.resolve()):
                raise SlimError(f"{slim_file}: {what} is missing or points outside the bundle")
            if real not in digests:
                digests[real] = hashlib.sha256(real.read_bytes()).hexdigest()
            if digests[real] != sha256:
                raise SlimError(f"{slim_file}: {what} does not have the content recorded for it")

        members = manifest["members"]
        for member in members:
            path = root / "wheel" / member["path"]
            if member["link"] and not (path.is_symlink() and os.readlink(path) == member["link"]):
                raise SlimError(f"{slim_file}: {member['path']} is not the link to {member['link']} recorded for it")
            check(path, member["sha256"], member["path"])
        target = wheel_dir / manifest["wheel"]
        partial = target.with_name(target.name + ".partial")
        with zipfile.ZipFile(partial, "w", compression=compression) as out:
            for member in members:
                info = zipfile.ZipInfo(member["path"], date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (0o100000 | member["mode"]) << 16
                info.compress_type = compression
                with (root / "wheel" / member["path"]).open("rb") as source, out.open(info, "w") as sink:
                    shutil.copyfileobj(source, sink, 2**20)
        partial.replace(target)
        if tools_dir is not None:
            tools_dir.mkdir(parents=True, exist_ok=True)
            for tool in manifest["tools"]:
                source = root / "tools" / tool["name"]
                check(source, tool["sha256"], f"tools/{tool['name']}")
                shutil.copyfile(source, tools_dir / tool["name"])
                (tools_dir / tool["name"]).chmod(tool["mode"])
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu.slim_wheel", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("slim", help="write the slim bundle of a wheel")
    make.add_argument("wheel", type=Path)
    make.add_argument("target", type=Path)
    make.add_argument("--tools-from", type=Path, help="folder of extra executables (llama.cpp's build/bin)")
    make.add_argument("--tool", action="append", default=[], help="an executable from --tools-from (repeat)")
    make.add_argument("--preset", type=int, default=9, help="xz preset (default 9)")
    back = commands.add_parser("restore", help="re-create the links and the wheel from a slim bundle")
    back.add_argument("slim", type=Path)
    back.add_argument("--wheel-dir", type=Path, required=True)
    back.add_argument("--tools-dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "slim":
            manifest = slim(args.wheel, args.target, args.tools_from, args.tool, args.preset)
            linked = sum(1 for m in manifest["members"] if m["link"])  # type: ignore[attr-defined]
            print(
                f"{args.target}: {manifest['slim_bytes'] / 2**20:.1f} MiB "
                f"from {manifest['wheel_bytes'] / 2**20:.1f} MiB "
                f"({linked} members as links, {len(manifest['tools'])} tools) in {manifest['seconds']} s"  # type: ignore[arg-type]
            )
        else:
            started = time.monotonic()
            wheel = restore(args.slim, args.wheel_dir, args.tools_dir)
            print(f"{wheel} ({wheel.stat().st_size / 2**20:.1f} MiB) in {time.monotonic() - started:.1f} s")
    except (SlimError, OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        print(f"slim_wheel {args.command} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
