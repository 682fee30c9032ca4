"""Continued-pretraining corpora: documents -> cleaned text -> tokens -> packed fixed-size blocks.

Inputs are files or directories of `.tex`, arXiv source archives (`.tar.gz`/`.tgz`/`.tar`, or a
gzipped single `.tex`), Markdown, text, and (with a warning that its mathematics is lost) PDF.
LaTeX is cleaned by `latex.clean_latex`; documents are de-duplicated, tokenized one by one
(no special tokens), joined with an EOS token after each document and cut into blocks of
exactly `block_size` tokens. The final partial block is dropped, or kept padded (`n_tokens`
says how many of its tokens are real).

    mathtune data build recipes/data/cpt_latex.yaml corpus.inputs=[papers/] corpus.block_size=2048
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MathtuneError
from .latex import clean_latex

log = logging.getLogger("mathtune.data")

TEXT_SUFFIXES = (".tex", ".md", ".markdown", ".txt")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".gz")


@dataclass
class Document:
    name: str
    text: str
    kind: str  # tex | markdown | text | pdf


@dataclass
class CorpusReport:
    documents: int = 0
    duplicates: int = 0
    empty: int = 0
    tokens: int = 0  # document tokens + one EOS per document
    blocks: int = 0
    padding_tokens: int = 0
    dropped_tail_tokens: int = 0
    warnings: list[str] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in (".tar.gz", ".tgz"):
        if name.endswith(s):
            return s
    return path.suffix.lower()


def iter_input_files(inputs: Sequence[str | Path]) -> Iterator[Path]:
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and _suffix(f) in (*TEXT_SUFFIXES, *ARCHIVE_SUFFIXES, ".pdf"):
                    yield f
        elif p.is_file():
            yield p
        else:
            raise MathtuneError(f"corpus input not found: {p}", "fix corpus.inputs (files or directories)")


def read_documents(inputs: Sequence[str | Path], report: CorpusReport) -> Iterator[Document]:
    for f in iter_input_files(inputs):
        suffix = _suffix(f)
        if suffix in (".tar.gz", ".tgz", ".tar", ".gz"):
            yield from _read_archive(f)
        elif suffix == ".pdf":
            yield _read_pdf(f, report)
        elif suffix in TEXT_SUFFIXES:
            kind = {".tex": "tex", ".txt": "text"}.get(suffix, "markdown")
            yield Document(str(f), f.read_text(encoding="utf-8", errors="replace"), kind)
        else:
            raise MathtuneError(f"unsupported corpus file {f}", "use .tex, .tar.gz (arXiv source), .md, .txt or .pdf")


def _read_archive(path: Path) -> Iterator[Document]:
    """An arXiv source archive: the main .tex file (the one with \\documentclass) with its
    \\input/\\include files inlined; a gzipped single .tex is read as it is."""
    data = path.read_bytes()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            files = {m.name: tar.extractfile(m).read().decode("utf-8", errors="replace")  # type: ignore[union-attr]
                     for m in tar.getmembers() if m.isfile() and m.name.endswith(".tex")}
    except tarfile.ReadError:
        try:
            yield Document(str(path), gzip.decompress(data).decode("utf-8", errors="replace"), "tex")
            return
        except OSError:
            raise MathtuneError(f"cannot read archive {path}", "expected a .tar.gz arXiv source or a gzipped .tex") from None
    mains = [n for n, t in files.items() if "\\documentclass" in t] or sorted(files)[:1]
    for main in mains:
        yield Document(f"{path}::{main}", _inline_inputs(files[main], files), "tex")


def _inline_inputs(text: str, files: dict[str, str], depth: int = 0) -> str:
    import re

    if depth > 5:
        return text

    def repl(m: re.Match) -> str:
        name = m.group(2).strip()
        for cand in (name, name + ".tex", name.lstrip("./"), name.lstrip("./") + ".tex"):
            if cand in files:
                return _inline_inputs(files[cand], files, depth + 1)
        return m.group(0)

    return re.sub(r"\\(input|include)\{([^}]*)\}", repl, text)


def _read_pdf(path: Path, report: CorpusReport) -> Document:
    msg = f"{path}: PDF text extraction loses the mathematics (use the LaTeX source where you can)"
    log.warning(msg)
    report.warnings.append(msg)
    try:
        from pypdf import PdfReader
    except ImportError:
        raise MathtuneError(f"cannot read PDF {path}: the pypdf package is not installed",
                            "pip install pypdf (its mathematics will still be lost), or give the .tex source") from None
    try:
        text = "\n\n".join(page.extract_text() or "" for page in PdfReader(str(path)).pages)
    except Exception as e:  # pypdf raises many types for damaged files
        raise MathtuneError(f"cannot read PDF {path}: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}",
                            "check the file, or give the .tex source") from None
    return Document(str(path), text, "pdf")


def clean_document(doc: Document, keep_floats: bool) -> str:
    if doc.kind == "tex":
        return clean_latex(doc.text, keep_floats=keep_floats)
    return doc.text.strip() + "\n" if doc.text.strip() else ""


def collect_clean_texts(
    inputs: Sequence[str | Path], keep_floats: bool = False, dedup: bool = True, report: CorpusReport | None = None
) -> tuple[list[str], CorpusReport]:
    """Read, clean and de-duplicate documents (exact, on whitespace-normalised text)."""
    report = report or CorpusReport()
    texts: list[str] = []
    seen: set[str] = set()
    for doc in read_documents(inputs, report):
        text = clean_document(doc, keep_floats)
        if not text.strip():
            report.empty += 1
            continue
        key = hashlib.sha1(" ".join(text.split()).encode("utf-8")).hexdigest()
        if dedup and key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        texts.append(text)
        report.by_kind[doc.kind] = report.by_kind.get(doc.kind, 0) + 1
    report.documents = len(texts)
    if not texts:
        raise MathtuneError(f"no documents with text found in {list(map(str, inputs))}",
                            "corpus.inputs should name .tex/.tar.gz/.md/.txt files or directories holding them")
    return texts, report


def pack_blocks(
    token_lists: Sequence[Sequence[int]], block_size: int, eos_id: int, pad_id: int, keep_last: bool
) -> tuple[list[list[int]], list[int]]:
    """Concatenate documents (each followed by `eos_id`) and cut into `block_size` blocks.

    Returns (blocks, real token count per block). The last partial block is dropped, or padded
    with `pad_id` when `keep_last`."""
    stream: list[int] = []
    for toks in token_lists:
        stream.extend(toks)
        stream.append(eos_id)
    full = len(stream) // block_size
    blocks = [stream[i * block_size : (i + 1) * block_size] for i in range(full)]
    counts = [block_size] * full
    tail = stream[full * block_size :]
    if keep_last and tail:
        blocks.append(tail + [pad_id] * (block_size - len(tail)))
        counts.append(len(tail))
    return blocks, counts


def tokenize_texts(texts: Sequence[str], tokenizer: Any) -> list[list[int]]:
    out: list[list[int]] = []
    for i in range(0, len(texts), 64):
        out.extend(tokenizer(list(texts[i : i + 64]), add_special_tokens=False)["input_ids"])
    return out


def build_corpus(
    inputs: Sequence[str | Path],
    out_dir: Path,
    tokenizer: Any,
    block_size: int = 2048,
    keep_last: bool = False,
    keep_floats: bool = False,
    dedup: bool = True,
) -> CorpusReport:
    """Write `out_dir/blocks.parquet` (input_ids, n_tokens) and `out_dir/texts.jsonl`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..files import atomic_write_jsonl

    texts, report = collect_clean_texts(inputs, keep_floats, dedup)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise MathtuneError("the corpus tokenizer has no EOS token", "use a tokenizer with an eos_token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    token_lists = tokenize_texts(texts, tokenizer)
    blocks, counts = pack_blocks(token_lists, block_size, eos, pad, keep_last)
    report.tokens = sum(len(t) for t in token_lists) + len(token_lists)
    report.blocks = len(blocks)
    report.padding_tokens = sum(block_size - c for c in counts)
    report.dropped_tail_tokens = report.tokens - sum(counts)
    if not blocks:
        raise MathtuneError(f"the corpus has {report.tokens} tokens, fewer than one block of {block_size}",
                            "lower corpus.block_size or set corpus.keep_last=true")
    table = pa.table({"input_ids": pa.array(blocks, type=pa.list_(pa.int32())), "n_tokens": pa.array(counts, pa.int32())})
    pq.write_table(table, out_dir / "blocks.parquet")
    atomic_write_jsonl(out_dir / "texts.jsonl", ({"text": t} for t in texts))
    return report
