"""``RuleError`` and the translation of lark's exceptions into readable messages.

Every error message has the same shape, so editors and CI logs can jump to it::

    rules/cartpole.rules:4:17: unknown name 'xdto' (did you mean 'xdot'?)
      rule a (hard): xdto <= 1
                     ^
    expected: a declared signal, action, constant or label
"""
from __future__ import annotations

import difflib
from typing import Iterable

# Human words for each terminal of grammar.lark (lark only knows their names).
TOKEN_WORDS: dict[str, str] = {
    "SIGNALS": "'signals'", "ACTIONS": "'actions'", "CONSTANTS": "'constants'",
    "MODEL": "'model'", "INVARIANT": "'invariant'", "RULE": "'rule'",
    "FALLBACK": "'fallback'", "HARD": "'hard'", "SOFT": "'soft'", "RANKED": "'ranked'",
    "OBS": "'obs'", "ACTION": "'action'", "IN": "'in'", "ENUM": "'enum'",
    "AND": "'and'", "OR": "'or'", "NOT": "'not'", "TRUE": "'true'", "FALSE": "'false'",
    "IF": "'if'", "THEN": "'then'", "ELSE": "'else'", "ANY": "'any'", "PREV": "'prev'",
    "NEXT": "'next'", "ABS": "'abs'", "MIN": "'min'", "MAX": "'max'",
    "ALWAYS": "'always'", "EVENTUALLY": "'eventually'", "HISTORICALLY": "'historically'",
    "ONCE": "'once'", "IMPLIES": "'->'", "COMPARE": "a comparison (< <= > >= == !=)",
    "EQUAL": "'='", "PRIME": "a prime (')", "COLON": "':'", "SEMICOLON": "';'",
    "COMMA": "','", "DOT": "'.'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['",
    "RSQB": "']'", "LBRACE": "'{'", "RBRACE": "'}'", "PLUS": "'+'", "MINUS": "'-'",
    "STAR": "'*'", "SLASH": "'/'", "CARET": "'^'", "NAME": "a name", "NUMBER": "a number",
    "STRING": 'a quoted description ("...")', "$END": "end of file",
}
# Tokens that begin a new top-level item: listed once as "a new section".
_SECTION_TOKENS = {"SIGNALS", "ACTIONS", "CONSTANTS", "MODEL", "INVARIANT", "RULE", "FALLBACK"}


class RuleError(Exception):
    """A malformed rules file: syntax, unknown names, wrong types or bad bindings."""

    def __init__(self, message: str, path: str = "<string>", line: int = 0, column: int = 0,
                 source: str = "", expected: str = "") -> None:
        self.message = message
        self.path = path
        self.line = line
        self.column = column
        self.source = source
        self.expected = expected
        super().__init__(self.format())

    def format(self) -> str:
        where = f"{self.path}:{self.line}:{self.column}" if self.line else self.path
        out = [f"{where}: {self.message}"]
        lines = self.source.splitlines()
        if self.line and 0 < self.line <= len(lines):
            text = lines[self.line - 1].rstrip().expandtabs(1)
            out.append("  " + text)
            out.append("  " + " " * max(self.column - 1, 0) + "^")
        if self.expected:
            out.append(f"expected: {self.expected}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()


def describe_tokens(names: Iterable[str]) -> str:
    """Turn lark terminal names into a sorted, de-duplicated list of words."""
    names = set(names)
    words = sorted({TOKEN_WORDS.get(n, n.lower()) for n in names - _SECTION_TOKENS})
    if names & _SECTION_TOKENS:
        words.append("a new section (signals:, actions:, constants:, model:, invariant:, "
                     "rule, fallback:)")
    if len(words) > 1:
        return ", ".join(words[:-1]) + " or " + words[-1]
    return words[0] if words else "nothing"


def suggest(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def from_lark(error: Exception, path: str, source: str) -> RuleError:
    """Convert lark's UnexpectedInput family into a RuleError."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(error, UnexpectedToken):
        token = error.token
        if token.type == "$END":
            what = "unexpected end of file"
            line, column = _end_position(source)
        else:
            what = f"unexpected {TOKEN_WORDS.get(token.type, token.type)} '{token}'"
            if token.type in TOKEN_WORDS and TOKEN_WORDS[token.type].startswith("'"):
                what = f"unexpected {TOKEN_WORDS[token.type]}"
            line, column = token.line, token.column
        return RuleError(what, path, line, column, source, describe_tokens(error.expected))
    if isinstance(error, UnexpectedCharacters):
        char = source[error.pos_in_stream] if error.pos_in_stream < len(source) else "?"
        return RuleError(f"unexpected character {char!r}", path, error.line, error.column,
                         source, describe_tokens(error.allowed or ()))
    if isinstance(error, UnexpectedEOF):
        line, column = _end_position(source)
        return RuleError("unexpected end of file", path, line, column, source,
                         describe_tokens(error.expected))
    return RuleError(str(error), path, source=source)


def _end_position(source: str) -> tuple[int, int]:
    lines = source.rstrip().splitlines() or [""]
    return len(lines), len(lines[-1]) + 1
