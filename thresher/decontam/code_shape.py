"""Evidence for rephrased code that survives renaming: the shape of a function as a canonical token sequence.

A rephrased HumanEval prompt renames the function, its parameters and locals, rewrites the docstring and changes the
example values, but keeps the signature's shape (``( I : List [ float ] , I : float ) -> bool :``), the control flow
and the calls (``abs ( I - I )``, ``return True``). Tokens: Python keywords and builtins kept, every other identifier
``I``, numbers ``N``, strings ``S``, operators and brackets kept; comments and docstrings dropped (their words are
rephrased). ``code_overlap`` is the share of an item's canonical 4-grams (prompt and canonical solution) that the row
holds, for items that define a function; 0 for the rest.
"""

from __future__ import annotations

import builtins
import keyword
import re
from functools import lru_cache

_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+(?:\.\d+)?|\"\"\"|'''|\"[^\"\n]*\"|'[^'\n]*'|->|==|!=|<=|>=|\*\*|//|[-+*/%<>=()\[\]{}:,.]")
_DOCSTRING = re.compile(r"(\"\"\"|\'\'\')[\s\S]*?\1")
_COMMENT = re.compile(r"#[^\n]*")
_KEEP = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"List", "Dict", "Tuple", "Optional", "Any", "Set", "Union"}
N = 4


def is_code(text: str) -> bool:
    return "def " in text


@lru_cache(maxsize=65536)
def shape(text: str) -> frozenset[tuple[str, ...]]:
    """The canonical token 4-grams of ``text`` (docstrings and comments dropped)."""
    text = _COMMENT.sub(" ", _DOCSTRING.sub(" ", text))
    tokens = []
    for token in _TOKEN.findall(text):
        if token[0].isdigit():
            tokens.append("N")
        elif token[0] in "\"'":
            tokens.append("S")
        elif token[0].isalpha() or token[0] == "_":
            tokens.append(token if token in _KEEP else "I")
        else:
            tokens.append(token)
    return frozenset(tuple(tokens[i : i + N]) for i in range(len(tokens) - N + 1))


def code_overlap(row: str, item_code: str) -> float:
    """Share of the item's canonical 4-grams in the row; 0 when the item defines no function."""
    if not is_code(item_code):
        return 0.0
    grams = shape(item_code)
    return len(grams & shape(row)) / len(grams) if grams else 0.0
