"""Controlled copies of benchmark items, as leakage looks in real training data.

Used by ``thresher audit --calibrate`` (planted into copies of the user's own rows) and by the
accuracy benchmark (planted into public corpora). Each variant takes an item's text (its question,
with lettered options for multiple choice) and a ``random.Random``; it returns the text to plant,
or ``None`` where the variant does not apply (a partial copy of a short item, numbers changed in a
text without numbers).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

PREAMBLES = [
    "I'm studying for an exam and got stuck on this one.",
    "Can you help me with my homework?",
    "Here is a problem from a worksheet my teacher gave us:",
    "Please solve the following and explain each step.",
]
POSTAMBLES = ["Thanks a lot, I really appreciate the help!", "Please show your reasoning.", "Explain it like I'm twelve.", ""]
_WORDS = re.compile(r"[^\W_]+")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.]*\d)")
# word-for-word substitutions a rephrasing template makes: not a paraphrase model, but the kind of
# edit that leaves few 8-grams intact while keeping the meaning
_SYNONYMS = {
    "how many": "what number of",
    "what is": "determine",
    "find": "work out",
    "calculate": "compute",
    "write": "implement",
    "function": "routine",
    "return": "give back",
    "returns": "gives back",
    "given": "provided",
    "each": "every",
    "total": "overall",
    "which of the following": "which one of these",
    "the number of": "the count of",
    "buy": "purchase",
    "bought": "purchased",
    "has": "owns",
    "have": "own",
    "more": "additional",
    "than": "compared with",
    "if": "when",
    "correct": "right",
    "statement": "claim",
    "true": "accurate",
    "list": "sequence",
    "string": "text",
    "number": "value",
    "many": "lots of",
    "uses": "makes use of",
    "each day": "daily",
    "per": "for each",
    "makes": "produces",
    "wants": "would like",
}
_SYNONYM = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _SYNONYMS), key=len, reverse=True)) + r")\b", re.IGNORECASE)
LABEL_STYLES = ("{}. ", "({}) ", "{}) ", "[{}] ")


def item_text(question: str, options: str = "", style: str = "{}. ") -> str:
    """An item as a training row shows it: the question, then its options one per line, lettered."""
    if not options:
        return question
    lines = [f"{style.format('ABCDEFGHIJ'[i])}{o}" for i, o in enumerate(options.split("\n")[:10])]
    return question + "\n" + "\n".join(lines)


def verbatim(text: str, rng: random.Random) -> str | None:
    return text


def embedded(text: str, rng: random.Random) -> str | None:
    """Inside a longer turn: a line before and after."""
    return f"{rng.choice(PREAMBLES)}\n\n{text}\n\n{rng.choice(POSTAMBLES)}".strip()


def noisy(text: str, rng: random.Random) -> str | None:
    """Case flips, dropped or doubled punctuation, and mangled whitespace."""
    out = []
    for ch in text:
        r = rng.random()
        if ch in ".,;:!?'\"()" and r < 0.5:
            out.append("" if r < 0.25 else ch * 2)
        elif ch == " " and r < 0.3:
            out.append(rng.choice(["  ", "\n", " \t "]))
        else:
            out.append(ch.upper() if r > 0.8 else ch.lower() if r > 0.6 else ch)
    return "".join(out)


def prefix(text: str, rng: random.Random) -> str:
    """The first 60-80% of the characters, cut back to a space."""
    cut = round(len(text) * rng.uniform(0.6, 0.8))
    space = text.rfind(" ", 0, cut + 1)
    return text[: space if space > 0 else cut]


def partial(text: str, rng: random.Random) -> str | None:
    """A ``prefix``, only for items of >= 16 words (a shorter prefix holds one or two 8-grams: a phrase,
    which the n-gram method deliberately does not flag)."""
    return prefix(text, rng) if len(_WORDS.findall(text)) >= 16 else None


def reformatted(text: str, rng: random.Random) -> str | None:
    """The same words laid out differently: options relabeled, code re-indented, LaTeX delimiters changed,
    lines re-wrapped and quoted."""
    lines = text.split("\n")
    style = rng.choice(LABEL_STYLES[1:])
    relabeled = [
        re.sub(r"^([A-J])\. ", lambda m: style.format(m.group(1).lower() if rng.random() < 0.5 else m.group(1)), line) for line in lines
    ]
    out = "\n".join(relabeled)
    out = re.sub(r"^( {4})+", lambda m: "  " * (len(m.group(0)) // 4), out, flags=re.MULTILINE)  # 4-space code to 2-space
    out = re.sub(r"\$([^$\n]+)\$", r"\\(\1\\)", out)
    if out == text:  # prose: each line wrapped at 50-70 characters and quoted
        width = rng.randint(50, 70)
        wrapped = []
        for paragraph in out.split("\n"):
            line = ""
            for word in paragraph.split():
                if line and len(line) + 1 + len(word) > width:
                    wrapped.append(line)
                    line = word
                else:
                    line = f"{line} {word}".strip()
            wrapped.append(line)
        out = "\n".join("> " + w for w in wrapped)
    return out


def numbers(text: str, rng: random.Random) -> str | None:
    """Every number changed (a perturbed problem: the same template with new values)."""
    if not _NUMBER.search(text):
        return None

    def change(m: re.Match[str]) -> str:
        value = m.group(0)
        if "." in value:
            return f"{float(value) * rng.uniform(1.2, 2.0):.{len(value.split('.')[1])}f}"
        n = int(value)
        return str(n + rng.randint(1, max(3, n // 2)))

    return _NUMBER.sub(change, text)


def rephrased(text: str, rng: random.Random) -> str | None:
    """A template rephrasing: common words and phrases swapped for synonyms, and the last sentence moved to
    the front when there are several (a question first, then its setting)."""

    def swap(m: re.Match[str]) -> str:
        new = _SYNONYMS[m.group(0).lower()]
        return new[0].upper() + new[1:] if m.group(0)[0].isupper() else new

    out = _SYNONYM.sub(swap, text)
    sentences = re.split(r"(?<=[.?!])\s+(?=[A-Z])", out.strip())
    if len(sentences) >= 3 and "\n" not in out:
        out = " ".join([sentences[-1], *sentences[:-1]])
    return out if out != text else None


VARIANTS: dict[str, Callable[[str, random.Random], str | None]] = {
    "verbatim": verbatim,
    "embedded": embedded,
    "noisy": noisy,
    "partial": partial,
    "reformatted": reformatted,
    "numbers": numbers,
    "rephrased": rephrased,
}
LITERAL = ("verbatim", "embedded", "noisy", "partial", "reformatted")  # copies: what the n-gram method must find
