"""Continued-pretraining corpora: LaTeX cleaning (comments, preamble, macros, floats), arXiv
archives, dedup, tokenization and packing into fixed blocks whose tokens equal the cleaned text's."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from mathtune.data import DataRecipe, build_dataset, read_blocks
from mathtune.data.corpus import collect_clean_texts, pack_blocks
from mathtune.data.latex import clean_latex
from mathtune.errors import MathtuneError

FIX = Path(__file__).parent / "data" / "data_fixtures" / "cpt"

VERBATIM_MATH = [  # math without macros: must come out byte-for-byte
    r"$\int_0^1 x^2\,dx = \frac{1}{3}$",
    r"$e^{i\pi} + 1 = 0$",
    "\\begin{align}\n  f(x) &= x^3 - 3x + 1 \\\\\n  f'(x) &= 3x^2 - 3\n\\end{align}",
    r"$N = p_1 p_2 \cdots p_k + 1$",
    r"$\sum_{n \ge 1} \frac{1}{n^2} = \frac{\pi^2}{6}$",
    r"$x = \frac{-b \pm \sqrt{b^2 - 4ac}}{2a}$",
]
EXPANDED_MATH = [  # math with macros: expanded exactly
    r"$x \in \mathbb{R}^n$",
    "\\left\\lVert x + y \\right\\rVert \\le \\left\\lVert x \\right\\rVert + \\left\\lVert y \\right\\rVert",
    r"$\operatorname{tr}(A) = \sum_{i=1}^n a_{ii}$",
    r"$(x_1, \dots, x_n) \ne (y_1, \dots, y_m)$",
    r"$\varepsilon > 0$",
    r"$\langle u, v \rangle \le \|u\| \|v\|$",
    r"$u, v \in \mathbb{Z}^2$",
    r"$\left| a + b \right| \le \left| a \right| + \left| b \right|$",
]


@pytest.fixture()
def corpus_dir(tmp_path: Path) -> Path:
    d = tmp_path / "papers"
    d.mkdir()
    for name in ("paper1.tex", "paper2.tex", "notes.md"):
        shutil.copy(FIX / name, d / name)
    shutil.copy(FIX / "paper1.tex", d / "paper1_copy.tex")  # an exact duplicate document
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted((FIX / "archive_src").rglob("*.tex")):
            tar.add(f, arcname=str(f.relative_to(FIX / "archive_src")))
    (d / "2401.00001.tar.gz").write_bytes(buf.getvalue())
    return d


def test_clean_latex_strips_comments_preamble_floats_and_expands_macros():
    out = clean_latex((FIX / "paper1.tex").read_text())
    assert "%" not in out.replace("50\\%", "")
    assert "whole line is a comment" not in out and "trailing comment" not in out
    assert "\\documentclass" not in out and "\\newcommand" not in out and "\\usepackage" not in out
    assert "includegraphics" not in out and "A plot that is not text" not in out
    assert "\\R" not in out and "\\norm" not in out and "\\tr" not in out.replace("\\tr(", "")
    kept = clean_latex((FIX / "paper1.tex").read_text(), keep_floats=True)
    assert "\\includegraphics" in kept


def test_corpus_texts_keep_math_and_drop_duplicates(corpus_dir):
    texts, report = collect_clean_texts([corpus_dir])
    assert report.documents == 4 and report.duplicates == 1
    assert report.by_kind == {"tex": 3, "markdown": 1}
    joined = "\n".join(texts)
    for math in VERBATIM_MATH + EXPANDED_MATH:
        assert math in joined, math
    assert "Draft text" not in joined and "Squares of primes" not in joined
    assert "We bound" in joined  # \input{sections/intro} inlined from the archive


def test_blocks_hold_exactly_the_cleaned_tokens(corpus_dir, tiny_tokenizer, tmp_path):
    texts, _ = collect_clean_texts([corpus_dir])
    expected = [tiny_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    n_expected = sum(len(t) for t in expected) + len(texts)  # one EOS after each document
    recipe = DataRecipe.model_validate({"kind": "cpt", "corpus": {"inputs": [str(corpus_dir)], "block_size": 64,
                                                                  "keep_last": True}})
    out = build_dataset(recipe, tmp_path / "cpt", tokenizer=tiny_tokenizer)
    blocks = read_blocks(out)
    assert all(len(b) == 64 for b in blocks)
    import pyarrow.parquet as pq

    n_tokens = pq.read_table(out / "blocks.parquet").column("n_tokens").to_pylist()
    assert sum(n_tokens) == n_expected
    stream = [t for b, n in zip(blocks, n_tokens, strict=True) for t in b[:n]]
    eos = tiny_tokenizer.eos_token_id
    docs, cur = [], []
    for t in stream:
        if t == eos:
            docs.append(cur)
            cur = []
        else:
            cur.append(t)
    assert docs == expected
    decoded = [tiny_tokenizer.decode(d) for d in docs]
    assert decoded == texts  # byte-for-byte round trip, so every formula survives
    card = json.loads((out / "card.json").read_text())
    assert card["report"]["tokens"] == n_expected and card["report"]["blocks"] == len(blocks)
    assert card["report"]["documents"] == 4 and (out / "card.md").is_file()

    dropped = build_dataset(recipe.model_copy(update={"corpus": recipe.corpus.model_copy(update={"keep_last": False})}),
                            tmp_path / "cpt2", tokenizer=tiny_tokenizer)
    assert len(read_blocks(dropped)) == n_expected // 64


def test_pack_blocks_keep_or_drop_tail():
    blocks, counts = pack_blocks([[1, 2, 3], [4, 5]], block_size=3, eos_id=0, pad_id=9, keep_last=True)
    assert blocks == [[1, 2, 3], [0, 4, 5], [0, 9, 9]] and counts == [3, 3, 1]
    blocks, counts = pack_blocks([[1, 2, 3], [4, 5]], block_size=3, eos_id=0, pad_id=9, keep_last=False)
    assert blocks == [[1, 2, 3], [0, 4, 5]] and counts == [3, 3]


def test_pdf_input_warns_or_explains_the_fix(tmp_path):
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4\n%%EOF\n")
    try:
        import pypdf  # noqa: F401
    except ImportError:
        with pytest.raises(MathtuneError, match="pypdf") as e:
            collect_clean_texts([pdf])
        assert "pip install pypdf" in e.value.hint
    else:  # pragma: no cover - depends on the environment
        with pytest.raises(MathtuneError):  # a damaged, textless PDF is a clear error either way
            collect_clean_texts([pdf])


def test_cpt_errors(tmp_path, tiny_tokenizer):
    with pytest.raises(MathtuneError, match="corpus input not found"):
        collect_clean_texts([tmp_path / "nope"])
    (tmp_path / "a.tex").write_text("\\begin{document}\nShort.\n\\end{document}\n")
    recipe = DataRecipe.model_validate({"kind": "cpt", "corpus": {"inputs": [str(tmp_path / "a.tex")], "block_size": 512}})
    with pytest.raises(MathtuneError, match="fewer than one block"):
        build_dataset(recipe, tmp_path / "o", tokenizer=tiny_tokenizer)
