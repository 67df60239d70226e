"""Preview what `specialize` will train on: tasks drawn from a task file, executed, and
rendered as the agent's own conversations. Then train with

    lmfast agent specialize --tools docs_src/specialize_preview.py:opening_hours \
        --tasks hours.yaml
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from lmfast.agents import tool
from lmfast.agents.react import system_prompt
from lmfast.agents.taskgen import build_tasks, chat_rows, load_task_file

HOURS = {"library": "9:00-18:00", "pool": "7:00-21:00", "museum": "10:00-17:00"}


@tool
def opening_hours(place: Literal["library", "pool", "museum"]) -> str:
    """Today's opening hours of a place in town.

    Args:
        place: Which place.
    """
    return HOURS[place]


TASKS = """
tasks:
  - task: ["When is the {place} open today?", "Is the {place} open now? What are its hours?",
           "Opening times of the {place}?"]   # the last wording is kept for held-out tasks
    calls: [opening_hours: {place: "{place}"}]
    answer: "The {place} is open {result} today."
"""

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hours.yaml"
        path.write_text(TASKS)
        spec = load_task_file(path)
    tools = [opening_hours]
    sets = build_tasks(spec, tools, train=20, held_out=3, executable={"opening_hours"})
    print(f"{len(sets.train)} training tasks {sets.by_kind}, {len(sets.held_out)} held out")
    system = system_prompt(tools, listing="compact")
    first = next(i for i in sets.train if i.kind == "single")
    for message in chat_rows([first], system, think=True, tool_turns=False)[0]["messages"][1:]:
        print(f"{message['role']}: {message['content']}")
