"""What every detection method shares: the benchmark items, a batch of training texts, and the match table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import polars as pl
import pyarrow as pa

from thresher.curation.ngrams import HashedTokens, word_hashes
from thresher.curation.normalize import NormalizeConfig, normalize, words_of

PARTS = ("question", "answer", "prompt")  # prompt: a multiple-choice question with its options
DEFAULT_NORMALIZE = NormalizeConfig()
SPAN = pl.Struct({"part": pl.String, "train_start": pl.Int64, "train_end": pl.Int64, "bench_start": pl.Int64, "bench_end": pl.Int64})
MATCH_SCHEMA = {
    "row": pl.Int64,  # global ordinal of the training row
    "item": pl.Int64,  # index of the benchmark item in the audit's item table
    "method": pl.String,
    "score": pl.Float64,
    "question_score": pl.Float64,
    "answer_score": pl.Float64,
    "spans": pl.List(SPAN),  # word positions in the normalized texts, aligned train/benchmark runs
    "distinct_score": pl.Float64,  # ngram: the score over the item's words that are not shared text (NgramConfig)
}


# An option label at the start of a line, after any quote marks ("A.", "(b)", "> C)", "[d]", "2:"), or a
# parenthesized capital anywhere after a space ("Options: (A) red (B) blue"): layout, not content. Benchmark
# items hold their options without labels, so copies match whatever lettering they use; every word list
# the detectors and the evidence see is taken after this.
OPTION_LABEL = r"(?m)(?:^[ \t>]*[\(\[]?(?:[A-Ja-j]|[1-9])[\.\)\]:]|(?:^|[ \t])\([A-J]\))[ \t]+"


# LaTeX that only lays out: sizing (\left, \bigl), spacing (\, \! \quad), style (\displaystyle), text wrappers
# (\text{…} keeps its words), and a degree sign written ^\circ; dropped like option labels. Same-meaning macros are
# spelled one way (\dfrac and \tfrac as \frac, \leq as \le), which keeps the word count.
LATEX_LAYOUT = (
    r"\\(?:left|right|[bB]igg?[lr]?|displaystyle|textstyle|scriptstyle|quad|qquad|text|textbf|textit|textrm|mathrm|mathbf|mbox"
    r"|operatorname)\b|\\[!,;:]|\^\s*\{?\\circ\}?"
)
_SAME_MACROS = ((r"\\[dt](frac|binom)\b", r"\$1"), (r"\\(le|ge|ne)q\b", r"\$1"))


# A run of at least four bracket symbols separated by spaces ("[ { [ ( ) ]": BBH dyck_languages) is content, not
# punctuation: in a text that has one, every bracket becomes a word of its own (normalization would drop them all).
SYMBOL_RUN = r"(?:[\[\]{}()<>] ){3,}[\[\]{}()<>]"
_SYMBOL_WORDS = {"(": "sympl", ")": "sympr", "[": "symbl", "]": "symbr", "{": "symcl", "}": "symcr", "<": "symal", ">": "symar"}


def without_option_labels(texts: pl.Series) -> pl.Series:
    return texts.str.replace_all(OPTION_LABEL, " ")  # a space: an inline label must not join its neighbours


def matchable(texts: pl.Series) -> pl.Series:
    r"""``texts`` as every detector and the evidence see them before normalization: option labels and LaTeX layout
    dropped, same-meaning macros spelled one way (``\dfrac{1}{2}`` and ``\left( \frac{1}{2} \right)`` are the same
    words), and bracket runs (``SYMBOL_RUN``) spelled as words."""
    texts = without_option_labels(texts)
    rows = texts.str.contains(r"[\\^]").fill_null(False).arg_true()  # LaTeX needs a backslash or a caret: the rest skip it
    if len(rows):
        latex = texts.gather(rows).str.replace_all(LATEX_LAYOUT, " ")
        for pattern, spelling in _SAME_MACROS:
            latex = latex.str.replace_all(pattern, spelling)
        texts = texts.scatter(rows, latex)
    rows = texts.str.contains(SYMBOL_RUN).fill_null(False).arg_true()
    if len(rows):
        symbols = texts.gather(rows)
        for symbol, word in _SYMBOL_WORDS.items():
            symbols = symbols.str.replace_all(symbol, f" {word} ", literal=True)
        texts = texts.scatter(rows, symbols)
    return texts


def word_rarity(owners: pl.DataFrame, items: int) -> pl.DataFrame:
    """``word`` -> ``rarity``, ``log(1 + items / items-with-the-word)``, from (``item``, ``word``) rows."""
    df = owners.unique().group_by("word").agg(pl.len().alias("df"))
    return df.select("word", (pl.lit(items) / pl.col("df")).log1p().alias("rarity"))


def empty_matches() -> pl.DataFrame:
    return pl.DataFrame(schema=cast(Any, MATCH_SCHEMA))


@dataclass
class TrainBatch:
    """One batch of training texts, normalized, split into words and hashed once for every method."""

    offset: int  # global ordinal of the batch's first row
    texts: pl.Series
    words: HashedTokens  # the hashes of each row's normalized words
    turns: pl.Series | None = None  # the row's turns (list[str]), for methods that look at one turn at a time

    @classmethod
    def of(cls, texts: pl.Series, offset: int, config: NormalizeConfig = DEFAULT_NORMALIZE, turns: pl.Series | None = None) -> TrainBatch:
        return cls(offset, texts, word_hashes(matchable(texts), config), turns)

    def __len__(self) -> int:
        return len(self.texts)


def item_words(texts: pl.Series, config: NormalizeConfig = DEFAULT_NORMALIZE) -> pa.LargeListArray:
    """The normalized words of benchmark texts (the same tokens training rows are split into)."""
    words = words_of(normalize(matchable(texts), config)).to_arrow()
    if isinstance(words, pa.ChunkedArray):
        words = words.combine_chunks()
    return words.cast(pa.large_list(pa.string()))


class Detector(Protocol):
    """A detection method: sees every training batch once, then gives its matches."""

    name: str

    def prepare(self, batch: TrainBatch) -> Any:
        """The part of scanning one batch that learns nothing from earlier batches (it may run on a worker
        thread, several batches at once); None when there is no such part."""
        ...

    def scan(self, batch: TrainBatch, prepared: Any = None) -> np.ndarray:
        """Look at one batch (in input order), with what ``prepare`` gave for it or None (then scan prepares
        itself); return the local rows that may match (their texts are kept for evidence)."""
        ...

    def finish(self) -> pl.DataFrame:
        """Matches over all batches, in MATCH_SCHEMA, with ``score`` in [0, 1]."""
        ...

    def drain(self) -> pl.DataFrame:
        """The matches since the last drain, forgetting them (for streaming filters)."""
        ...

    def fresh(self) -> Detector:
        """A detector sharing this one's index and model but nothing it has seen (for calibration)."""
        ...

    def state(self) -> Any:
        """What this detector has gathered from its batches (picklable), for another process to ``absorb``."""
        ...

    def absorb(self, state: Any) -> None:
        """Add what a detector with the same index gathered from other batches (``state()``): ``finish`` then
        gives the matches of all their batches together, the same as one detector that scanned them all."""
        ...
