"""Cost estimates from token usage and an editable price table (`prices.yaml`)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_PRICES_FILE = Path(__file__).resolve().parent / "prices.yaml"


class PriceTableError(ValueError):
    """A price file that cannot be used; names the file and the row."""


@dataclass(frozen=True)
class Price:
    """US dollars per million input and output tokens for models matching `match`."""

    match: str
    input: float
    output: float
    batch_discount: float = 0.0


@dataclass(frozen=True)
class PriceTable:
    """Rows tried in order; the first whose pattern matches "PROVIDER:MODEL" wins."""

    rows: tuple[Price, ...]

    @classmethod
    def from_file(cls, path: Path = DEFAULT_PRICES_FILE) -> PriceTable:
        """Read a price YAML file (`prices: [{match, input, output, batch_discount}]`)."""
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise PriceTableError(f"{path}: cannot read price table: {error}") from None
        rows = data.get("prices") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise PriceTableError(f"{path}: expected a list under 'prices:'")
        prices = []
        for index, row in enumerate(rows):
            try:
                price = Price(**row)
            except TypeError as error:
                raise PriceTableError(f"{path}: prices[{index}]: {error}") from None
            numbers = (price.input, price.output, price.batch_discount)
            if not all(isinstance(n, (int, float)) and n >= 0 for n in numbers) or price.batch_discount > 1:
                raise PriceTableError(f"{path}: prices[{index}]: prices must be >= 0 and batch_discount in [0, 1]")
            prices.append(price)
        return cls(tuple(prices))

    def lookup(self, provider: str, model: str) -> Price | None:
        """The price row for a model, or None."""
        name = f"{provider}:{model}".lower()
        return next((row for row in self.rows if fnmatch.fnmatchcase(name, row.match.lower())), None)

    def cost(self, provider: str, model: str, input_tokens: int, output_tokens: int, batch: bool) -> float | None:
        """Estimated US dollars for the given usage, or None when the model has no price."""
        price = self.lookup(provider, model)
        if price is None:
            return None
        factor = 1.0 - price.batch_discount if batch else 1.0
        return factor * (input_tokens * price.input + output_tokens * price.output) / 1e6
