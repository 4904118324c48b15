"""Ollama's Modelfile grammar: the text of a Modelfile as a list of instructions.

Owns the parse, ported from Ollama's ``parser/parser.go`` (``ParseFile``) rune by rune so
that a Modelfile means here what it means to ``ollama create``: instructions in any case,
``#`` comments between them, values that run to the end of the line unless a ``"`` or a
``\"\"\"`` quote holds them open across lines, ``PARAMETER <name> <value>`` and
``MESSAGE <role> <text>``, a byte-order mark skipped, and at least one ``FROM``. Where
Ollama's errors name no line (or count a CRLF as two), these name the instruction's line.
It does not interpret the instructions (see ``modelfile_import``).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from enum import Enum, auto

#: Ollama's instructions (``isValidCommand``).
INSTRUCTIONS = (
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "draft",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
)
ROLES = ("system", "user", "assistant")


class ModelfileError(ValueError):
    """A Modelfile that Ollama would refuse; ``line`` is 1-based (0: the whole file)."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass(frozen=True)
class Instruction:
    """One instruction: ``name`` lower-case (``model`` for FROM, as Ollama names it; the
    parameter's own name for PARAMETER), ``args`` unquoted (``role: text`` for MESSAGE)."""

    name: str
    args: str
    line: int
    keyword: str  # FROM, PARAMETER, ...: what the file said, upper-cased


class _State(Enum):
    NIL = auto()
    NAME = auto()
    VALUE = auto()
    PARAMETER = auto()
    MESSAGE = auto()
    COMMENT = auto()


def decode(data: bytes) -> str:
    """The file's text: UTF-8, or UTF-16 when it starts with that byte-order mark, as Go's
    ``unicode.BOMOverride`` reads it; a UTF-8 mark is dropped."""
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            return data[len(bom) :].decode(codec)
    return data.decode("utf-8-sig")


def parse(text: str) -> list[Instruction]:
    """The instructions of a Modelfile; a ModelfileError where Ollama's parser fails."""
    instructions: list[Instruction] = []
    state = _State.NIL
    buffer: list[str] = []
    name, keyword, role = "", "", ""
    line, start = 1, 1
    previous = ""
    for char in text:
        # Ollama counts \r and \n each; a CRLF is one line here.
        if char == "\r" or (char == "\n" and previous != "\r"):
            line += 1
        previous = char
        following, char = _next(char, state, start, buffer)
        if following != state:
            if state is _State.NAME:
                word = "".join(buffer)
                keyword, lowered = word.upper(), word.lower()
                if lowered not in INSTRUCTIONS:
                    raise ModelfileError(start, _unknown(word))
                if lowered == "from":
                    name = "model"
                elif lowered == "parameter":
                    following = _State.PARAMETER
                elif lowered == "message":
                    following, name = _State.MESSAGE, lowered
                else:
                    name = lowered
            elif state is _State.PARAMETER:
                name = "".join(buffer)
            elif state is _State.MESSAGE:
                role = "".join(buffer)
                if role not in ROLES:
                    raise ModelfileError(start, f"MESSAGE role must be one of {_or(ROLES)}")
            elif state is _State.VALUE:
                # A space never ends a value; a line end does, unless a quote is still open.
                value = None if char in " \t" else _closed(buffer)
                if value is None:
                    buffer.append(char)
                    continue
                args = f"{role}: {value}" if role else value
                role = ""
                instructions.append(Instruction(name, args, start, keyword))
            buffer = []
            state = following
            if state is _State.NAME:
                start = line
        if char and char.isprintable():
            buffer.append(char)
    if state is _State.VALUE:
        value = _unquote("".join(buffer).strip())
        if value is None:
            raise ModelfileError(start, f"{keyword}: a quote is opened but never closed")
        args = f"{role}: {value}" if role else value
        instructions.append(Instruction(name, args, start, keyword))
    elif state is _State.NAME:
        raise ModelfileError(start, _no_value("".join(buffer)))
    elif state is not _State.NIL and state is not _State.COMMENT:
        raise ModelfileError(start, f"{keyword} {''.join(buffer)}: the file ends before its value")
    if not any(i.name == "model" for i in instructions):
        raise ModelfileError(0, "no FROM line: a Modelfile names its model with FROM")
    return instructions


def _next(char: str, state: _State, start: int, buffer: list[str]) -> tuple[_State, str]:
    """``parseRuneForState``: the state ``char`` leads to, and the character to keep ("")."""
    space, newline = char in " \t", char in "\r\n"
    if state is _State.NIL:
        if char == "#":
            return _State.COMMENT, ""
        return (_State.NIL, "") if space or newline else (_State.NAME, char)
    if state is _State.NAME:
        if _alpha(char):
            return _State.NAME, char
        if space:
            return _State.VALUE, ""
        word = "".join(buffer)
        raise ModelfileError(start, _no_value(word) if newline else _unknown(word + char))
    if state is _State.VALUE:
        return (_State.NIL, char) if space or newline else (_State.VALUE, char)
    if state is _State.PARAMETER:
        if _alpha(char) or (char.isdigit() and char.isascii()) or char == "_":
            return _State.PARAMETER, char
        if space:
            return _State.VALUE, ""
        word = "".join(buffer)
        raise ModelfileError(start, f"PARAMETER {word}{char.strip()}: expected a name and a value")
    if state is _State.MESSAGE:
        if _alpha(char):
            return _State.MESSAGE, char
        if space:
            return _State.VALUE, ""
        raise ModelfileError(start, f"MESSAGE {''.join(buffer)}: expected a role and a message")
    return (_State.NIL, "") if newline else (_State.COMMENT, "")


def _closed(buffer: list[str]) -> str | None:
    """``_unquote`` of the buffer, without joining it while a long quote is still open: a
    \"\"\" block of a licence would otherwise be joined again at each of its lines."""
    lead = next((i for i, c in enumerate(buffer) if not c.isspace()), len(buffer))
    trail = next((i for i, c in enumerate(reversed(buffer)) if not c.isspace()), 0)
    length = len(buffer) - lead - trail
    head = "".join(buffer[lead : lead + 3])
    tail = "".join(buffer[max(lead, len(buffer) - trail - 3) : len(buffer) - trail])
    if head.startswith('"""') and not (length >= 6 and tail == '"""'):
        return None
    if head.startswith('"') and not (length >= 2 and tail.endswith('"')):
        return None
    return _unquote("".join(buffer).strip())


def _unquote(text: str) -> str | None:
    """``unquote``: the text inside \"\"\"...\"\"\" or "...", None while a quote is open."""
    if text.startswith('"""'):
        return text[3:-3] if len(text) >= 6 and text.endswith('"""') else None
    if text.startswith('"'):
        return text[1:-1] if len(text) >= 2 and text.endswith('"') else None
    return text


def _alpha(char: str) -> bool:
    return char.isascii() and char.isalpha()


def _no_value(word: str) -> str:
    if word.lower() in INSTRUCTIONS:
        return f"{word.upper()}: expected a value after it"
    return _unknown(word)


def _unknown(word: str) -> str:
    listed = ", ".join(i.upper() for i in INSTRUCTIONS)
    return f"unknown instruction {word!r}; a Modelfile's instructions are {listed}"


def _or(words: tuple[str, ...]) -> str:
    return ", ".join(f'"{w}"' for w in words[:-1]) + f' or "{words[-1]}"'
