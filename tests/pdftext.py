"""The text of each page of a PDF that headless Chromium printed, read with the standard library only.

Enough for tests, not a general PDF reader: Chromium (Skia) writes plain objects (no object streams), Flate
content streams, and Type0 fonts whose ToUnicode CMaps map glyph ids back to text. Each page's text is the
decoded strings of its Tj/TJ operators in stream order, NFKC-normalized (ligatures become letters). Chromium
places runs of glyphs on their own, so spaces between words may be missing or extra: compare with `squash`.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from pathlib import Path

_OBJ = re.compile(rb"(\d+) 0 obj(.*?)endobj", re.S)
_REF = rb"(\d+) 0 R"


def _objects(data: bytes) -> dict[int, tuple[bytes, bytes | None]]:
    out = {}
    for m in _OBJ.finditer(data):
        body = m.group(2)
        stream = None
        s = re.search(rb"stream\r?\n", body)
        if s and b"endstream" in body:
            raw = body[s.end():body.rindex(b"endstream")]
            head = body[:s.start()]
            if b"/FlateDecode" in head:
                try:
                    raw = zlib.decompressobj().decompress(raw)
                except zlib.error:
                    raw = b""
            stream, body = raw, head
        out[int(m.group(1))] = (body, stream)
    return out


def _cmap(stream: bytes) -> dict[int, str]:
    table: dict[int, str] = {}

    def uni(h: bytes) -> str:
        h = h.decode("ascii")
        return bytes.fromhex(h).decode("utf-16-be", "replace") if len(h) % 4 == 0 else chr(int(h, 16))

    for block in re.findall(rb"beginbfchar(.*?)endbfchar", stream, re.S):
        for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            table[int(src, 16)] = uni(dst)
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", stream, re.S):
        for a, b, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            start = uni(dst)
            for i, gid in enumerate(range(int(a, 16), int(b, 16) + 1)):
                table[gid] = start[:-1] + chr(ord(start[-1]) + i)
    return table


def _fonts(objs, resources: bytes) -> dict[bytes, dict[int, str]]:
    m = re.search(rb"/Font\s*(<<.*?>>|" + _REF + rb")", resources, re.S)
    if not m:
        return {}
    fonts = m.group(1)
    if not fonts.startswith(b"<<"):
        fonts = objs[int(m.group(2))][0]
    out = {}
    for name, ref in re.findall(rb"/([\w.+-]+)\s+" + _REF, fonts):
        body = objs.get(int(ref), (b"", None))[0]
        tu = re.search(rb"/ToUnicode\s+" + _REF, body)
        out[name] = _cmap(objs[int(tu.group(1))][1] or b"") if tu else {}
    return out


_TOKENS = re.compile(rb"/([\w.+-]+)\s+[\d.]+\s+Tf|<([0-9A-Fa-f]*)>")


def squash(text: str) -> str:
    """`text` without whitespace, for comparing with what a page shows."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def pages(path: Path) -> list[str]:
    """The text of every page, in page order."""
    data = Path(path).read_bytes()
    objs = _objects(data)
    root = re.search(rb"/Root\s+" + _REF, data)
    catalog = objs[int(root.group(1))][0]
    top = int(re.search(rb"/Pages\s+" + _REF, catalog).group(1))
    order: list[int] = []

    def walk(n: int) -> None:
        body = objs[n][0]
        if re.search(rb"/Type\s*/Pages\b", body):
            kids = re.search(rb"/Kids\s*\[(.*?)\]", body, re.S).group(1)
            for k in re.findall(_REF, kids):
                walk(int(k))
        else:
            order.append(n)

    walk(top)
    texts = []
    for n in order:
        body = objs[n][0]
        res = re.search(rb"/Resources\s*(" + _REF + rb"|<<)", body)
        resources = objs[int(res.group(2))][0] if res and res.group(2) else body
        fonts = _fonts(objs, resources)
        contents = re.search(rb"/Contents\s*(\[.*?\]|" + _REF + rb")", body, re.S)
        refs = re.findall(_REF, contents.group(1)) if contents else []
        stream = b"\n".join(objs[int(r)][1] or b"" for r in refs)
        cmap: dict[int, str] = {}
        out: list[str] = []
        for t in _TOKENS.finditer(stream):
            if t.group(1):
                cmap = fonts.get(t.group(1), {})
            elif t.group(2) is not None:
                h = t.group(2).decode("ascii")
                out.extend(cmap.get(int(h[i:i + 4], 16), "") for i in range(0, len(h) - 3, 4))
        texts.append(unicodedata.normalize("NFKC", "".join(out)))
    return texts
