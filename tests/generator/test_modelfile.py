"""The Modelfile grammar, case by case as Ollama's parser/parser.go (and its tests) read it."""

from __future__ import annotations

import codecs

import pytest

from corral.generator.modelfile import Instruction, ModelfileError, decode, parse


def pairs(text: str) -> list[tuple[str, str]]:
    return [(i.name, i.args) for i in parse(text)]


def test_instructions_in_any_case_with_comments_between() -> None:
    text = "# a comment\nfrom  gemma3:270m\n\n  # indented comment\nSyStEm Be brief.\n"
    assert pairs(text) == [("model", "gemma3:270m"), ("system", "Be brief.")]


def test_each_instruction_keeps_its_line() -> None:
    found = parse("FROM a\n\nPARAMETER top_k 4\r\nSYSTEM s\n")
    assert [(i.keyword, i.line) for i in found] == [("FROM", 1), ("PARAMETER", 3), ("SYSTEM", 4)]


def test_a_value_runs_to_the_end_of_the_line_spaces_and_hashes_included() -> None:
    assert pairs("FROM m\nSYSTEM You are   a # helper \t\n") == [
        ("model", "m"),
        ("system", "You are   a # helper"),
    ]


def test_quotes_and_triple_quotes_hold_lines_together() -> None:
    text = 'FROM m\nSYSTEM """\nline one\n  "quoted" two\n"""\nTEMPLATE "a\nb"\nSYSTEM ""\n'
    assert pairs(text) == [
        ("model", "m"),
        ("system", '\nline one\n  "quoted" two\n'),
        ("template", "a\nb"),
        ("system", ""),
    ]


def test_parameter_and_message_take_a_name_then_a_value() -> None:
    text = 'FROM m\nPARAMETER stop "<|end|>"\nPARAMETER num_ctx 8192\nMESSAGE user Hi there\n'
    assert pairs(text) == [
        ("model", "m"),
        ("stop", "<|end|>"),
        ("num_ctx", "8192"),
        ("message", "user: Hi there"),
    ]


def test_a_byte_order_mark_is_skipped_and_utf16_is_read() -> None:
    text = "FROM m\nSYSTEM héllo\n"
    assert decode(codecs.BOM_UTF8 + text.encode()) == text
    assert decode(codecs.BOM_UTF16_LE + text.encode("utf-16-le")) == text
    assert parse(decode(codecs.BOM_UTF8 + text.encode()))[1] == Instruction(
        "system", "héllo", 2, "SYSTEM"
    )


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("FROM m\nBOGUS x\n", 2, "unknown instruction 'BOGUS'"),
        ("FROM m\n\nFROM2 x\n", 3, "unknown instruction 'FROM2'"),
        ("FROM m\nSYSTEM\n", 2, "SYSTEM: expected a value"),
        ("FROM m\nPARAMETER temperature\n", 2, "PARAMETER temperature: expected a name and"),
        ("FROM m\nMESSAGE robot hello\n", 2, 'role must be one of "system", "user" or'),
        ('FROM m\nSYSTEM """never closed\n', 2, "SYSTEM: a quote is opened but never closed"),
        ('FROM m\nSYSTEM "half\nmore\n', 2, "never closed"),
        ("FROM m\nPARAMETER", 2, "PARAMETER: expected a value"),
        ("# only a comment\n", 0, "no FROM line"),
        ("SYSTEM hi\n", 0, "no FROM line"),
    ],
)
def test_malformed_modelfiles_fail_with_their_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ModelfileError) as failure:
        parse(text)
    assert failure.value.line == line
    assert words in failure.value.message
