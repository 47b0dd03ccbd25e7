"""Bad ``--data`` / ``--train`` CSVs are clear errors, raised before any model is loaded or output written."""
from __future__ import annotations

from pathlib import Path

import pytest

from nebras_bot.cli import main
from nebras_bot.evaluation.evaluate import EvaluationInputError, eval_rows, read_rows, resolve_entity_value
from nebras_bot.evaluation.settings import NON_EMPTY_DATA_COLUMNS, REQUIRED_DATA_COLUMNS

from .conftest import DATA_ROWS, FIELDS, write_csv


def _data(path: Path) -> list:
    return read_rows(path, REQUIRED_DATA_COLUMNS, NON_EMPTY_DATA_COLUMNS)


def test_good_csv_reads_all_rows_and_skips_blank_lines(tmp_path):
    path = write_csv(tmp_path / "d.csv", DATA_ROWS)
    path.write_text(path.read_text() + ",,,,,,\n")
    rows = _data(path)
    assert [r["instruction"] for r in rows] == [r["instruction"] for r in DATA_ROWS]


def test_byte_order_mark_is_accepted(tmp_path):
    path = write_csv(tmp_path / "d.csv", DATA_ROWS)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(_data(path)) == len(DATA_ROWS)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "missing column(s) instruction, intent, entity_type, entity_value, response"),
        (b"instruction,intent\nhi,greet\n", "missing column(s) entity_type, entity_value, response"),
        ("instruction,intent,entity_type,entity_value,response\ncaf\xe9,greet,,,hi\n".encode("latin-1"),
         "not a UTF-8 text file"),
        (b"instruction,intent,entity_type,entity_value,response\n", "no rows with an instruction"),
        (b"instruction,intent,entity_type,entity_value,response\nhi,,,,Hello\nyo,greet,,,\n",
         "2 row(s) with an empty instruction / intent / response (line(s) 2, 3)"),
        (b'instruction,intent,entity_type,entity_value,response\n"unterminated,greet,,,hi\n\x00', "not a readable CSV"),
    ],
)
def test_bad_data_csv_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(EvaluationInputError) as caught:
        _data(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(EvaluationInputError, match="not found"):
        _data(tmp_path / "nope.csv")


def test_cli_reports_bad_input_without_loading_a_model_or_writing(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nhi,hello\n")
    good = write_csv(tmp_path / "train.csv", DATA_ROWS)
    out = tmp_path / "out"
    # --model does not exist either: the CSV is checked first, so the CSV error is what is reported.
    code = main(["evaluate", "--model", str(tmp_path / "no-model"), "--data", str(bad), "--train", str(good),
                 "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "missing column(s) instruction, intent" in err and "found: answer, question" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "instruction, value, start, end, expected",
    [
        ("cancel order 12345 now", "12345", "13", "18", "12345"),       # consistent
        ("cancel order 12345 now", "1234", "13", "18", "12345"),        # truncated value: the span wins
        ("cancel order 12345 now", "12345", "0", "5", "12345"),         # wrong offsets: the value wins
        ("cancel order 12345 now", "12345", "x", "", "12345"),          # unparsable offsets
        ("cancel my order", "777", "", "", "777"),                      # not in the text: kept as given
    ],
)
def test_entity_value_repair(instruction, value, start, end, expected):
    assert resolve_entity_value(instruction, value, start, end) == expected


def test_reference_placeholders_are_filled_from_the_row_entity():
    rows = eval_rows([{"instruction": "cancel order 4444", "intent": "cancel_order", "entity_type": "order_id",
                       "entity_value": "4444", "response": "Order {order_id} is cancelled; {invoice_id} stays."}])
    assert rows[0].reference == "Order 4444 is cancelled; {invoice_id} stays."
    assert rows[0].entity_value == "4444"
    assert FIELDS[:2] == ["instruction", "intent"]
