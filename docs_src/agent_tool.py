"""A tool-calling agent on the embedded model, with a tool built from a typed function."""

from typing import Literal

from lmfast.agents import Agent, tool
from lmfast.agents.builtin import calculator

CITIES = {"oslo": {"country": "Norway", "population": "709,000"},
          "denver": {"country": "United States", "population": "716,000"}}  # fmt: skip


@tool
def lookup_city(city: str, field: Literal["country", "population"]) -> str:
    """Look up a fact about a city in the local table.

    Args:
        city: The city.
        field: What to look up.
    """
    return CITIES.get(city.lower(), {}).get(field, "unknown city")


agent = Agent([lookup_city, calculator], on_event=print)  # embedded model, llama.cpp
result = agent.run("What is the population of Oslo?")
print(result.answer)
print(len(result.calls), "tool calls;", len(result.transcript), "messages kept")
