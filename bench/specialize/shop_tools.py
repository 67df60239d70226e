"""The second tool set of the specialization benchmark: a small shop (stock, order totals,
currencies). It shares no tool with the agent benchmark's set."""

from __future__ import annotations

from typing import Annotated, Literal

from lmfast.agents import tool
from pydantic import Field

PRICES = {"notebook": 3.2, "stapler": 7.5, "backpack": 24.9, "pen": 1.1, "lamp": 18.0, "mug": 5.6}
STORES = ("Berlin", "Madrid", "Dublin")
STOCK = {
    ("notebook", "Berlin"): 120, ("notebook", "Madrid"): 45, ("notebook", "Dublin"): 8,
    ("stapler", "Berlin"): 14, ("stapler", "Madrid"): 0, ("stapler", "Dublin"): 31,
    ("backpack", "Berlin"): 6, ("backpack", "Madrid"): 19, ("backpack", "Dublin"): 2,
    ("pen", "Berlin"): 500, ("pen", "Madrid"): 230, ("pen", "Dublin"): 75,
    ("lamp", "Berlin"): 3, ("lamp", "Madrid"): 11, ("lamp", "Dublin"): 9,
    ("mug", "Berlin"): 40, ("mug", "Madrid"): 27, ("mug", "Dublin"): 66,
}  # fmt: skip
# Euros per unit of each currency.
RATES = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "JPY": 0.0061}

Item = Literal["notebook", "stapler", "backpack", "pen", "lamp", "mug"]
Store = Literal["Berlin", "Madrid", "Dublin"]
Currency = Literal["EUR", "USD", "GBP", "JPY"]


@tool
def stock_level(item: Item, store: Store) -> str:
    """How many units of an item a store has in stock.

    Args:
        item: The item.
        store: The store (Berlin, Madrid or Dublin).
    """
    return f"{STOCK[item, store]} units"


@tool
def order_total(item: Item, quantity: Annotated[int, Field(ge=1, le=10_000)]) -> str:
    """The total price in euros of an order of one item.

    Args:
        item: The item.
        quantity: How many.
    """
    return f"{PRICES[item] * quantity:.2f} EUR"


@tool
def convert_currency(amount: float, from_currency: Currency, to_currency: Currency) -> str:
    """Convert an amount of money between EUR, USD, GBP and JPY.

    Args:
        amount: The amount.
        from_currency: The currency it is in.
        to_currency: The currency wanted.
    """
    return f"{amount * RATES[from_currency] / RATES[to_currency]:.2f} {to_currency}"


TOOLS = [stock_level, order_total, convert_currency]
