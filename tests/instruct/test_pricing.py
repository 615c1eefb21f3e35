"""The price table (`llama3med.instruct.pricing`): first matching row wins, batch discount, clear errors."""

from __future__ import annotations

import pytest

from llama3med.instruct.pricing import Price, PriceTable, PriceTableError


def test_price_table_matching_and_errors(tmp_path):
    table = PriceTable.from_file()
    assert table.cost("anthropic", "claude-3-opus-20240229", 1_000_000, 100_000, batch=False) == pytest.approx(22.5)
    assert table.cost("anthropic", "claude-3-opus-20240229", 1_000_000, 100_000, batch=True) == pytest.approx(11.25)
    assert table.cost("openai", "meta-llama/Meta-Llama-3-70B-Instruct", 10, 10, batch=False) is None
    bad = tmp_path / "p.yaml"
    bad.write_text("prices:\n  - match: 'x*'\n    input: -1\n    output: 1\n")
    with pytest.raises(PriceTableError, match=r"prices\[0\]: prices must be >= 0"):
        PriceTable.from_file(bad)


def test_first_matching_row_wins_case_insensitively():
    table = PriceTable((Price("anthropic:claude-3-haiku*", 0.25, 1.25, 0.5), Price("anthropic:*", 15.0, 75.0)))
    assert table.lookup("Anthropic", "Claude-3-Haiku-20240307") == table.rows[0]
    assert table.lookup("anthropic", "claude-3-opus-20240229") == table.rows[1]
    assert table.lookup("openai", "gpt-4o") is None
    # 2M input x $0.25 + 400k output x $1.25 per million, half price in batch mode
    assert table.cost("anthropic", "claude-3-haiku-20240307", 2_000_000, 400_000, batch=False) == pytest.approx(1.0)
    assert table.cost("anthropic", "claude-3-haiku-20240307", 2_000_000, 400_000, batch=True) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prices: {}\n", r"expected a list under 'prices:'"),
        ("[1, 2]\n", r"expected a list under 'prices:'"),
        ("prices:\n  - match: 'x*'\n    input: 1\n", r"prices\[0\]: .*output"),
        ("prices:\n  - match: 'x*'\n    input: 1\n    output: 1\n    batch_discount: 1.5\n", r"batch_discount in \[0, 1\]"),
        ("prices: [\n", r"cannot read price table"),
    ],
)
def test_unusable_price_files_name_the_file_and_row(tmp_path, text, message):
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(PriceTableError, match=message):
        PriceTable.from_file(path)
    with pytest.raises(PriceTableError, match="cannot read price table"):
        PriceTable.from_file(tmp_path / "missing.yaml")
