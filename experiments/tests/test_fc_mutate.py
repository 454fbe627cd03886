"""Edits of real function-calling conversations keep every turn consistent with the others."""

from __future__ import annotations

import json
import random
from pathlib import Path

from tools.strategies.base import Candidate

from experiments.fc_mutate import FCMutationStrategy, Pools, add_tool, perturb_observation, shift_date, swap_entity
from tools.data import FlockRecord, Turn, load_jsonl
from tools.quality import check_function_calls
from tools.tasks.function_calling import FunctionCallingPlugin

TASK = Path(__file__).resolve().parents[2] / "tools" / "demo_tasks" / "function_calling" / "training_set.jsonl"
WEATHER = {"name": "get_weather", "description": "Current weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def weather(city: str, temperature: int, day: str = "") -> FlockRecord:
    return FlockRecord(system="Helpful.", tools=json.dumps([WEATHER]), conversations=[
        Turn(role="user", content=f"Weather in {city}{day}?"),
        Turn(role="function_call", content=json.dumps({"name": "get_weather", "arguments": {"city": city}})),
        Turn(role="observation", content=json.dumps({"city": city, "temperature": temperature})),
        Turn(role="assistant", content=f"It's {temperature}°C in {city}{day}."),
    ])


def test_swap_entity_changes_the_value_in_every_turn() -> None:
    pools = Pools([weather("Porto", 19), weather("Bergen", 11)])
    edited = swap_entity(weather("Porto", 19), pools, random.Random(0))
    assert edited is not None
    text = json.dumps(edited.to_json_dict())
    assert "Porto" not in text and text.count("Bergen") == 4


def test_shift_date_moves_iso_and_spoken_dates_together() -> None:
    record = FlockRecord(system="s", conversations=[
        Turn(role="user", content="Remind me on 2025-10-05."),
        Turn(role="assistant", content="Done: 5 October (2025-10-05).")])
    edited = shift_date(record, Pools([record]), random.Random(4))
    assert edited is not None
    user, answer = (t.content for t in edited.conversations)
    new_iso = user.removeprefix("Remind me on ").rstrip(".")
    assert new_iso != "2025-10-05" and new_iso in answer
    assert "5 October" not in answer


def test_perturb_observation_changes_the_quoted_number_in_the_answer() -> None:
    edited = perturb_observation(weather("Porto", 20), Pools([]), random.Random(0))
    assert edited is not None
    new = json.loads(edited.conversations[2].content)["temperature"]
    assert new != 20 and f"{new}°C" in edited.conversations[3].content


def test_add_tool_offers_an_unused_tool() -> None:
    other = {"name": "get_stock_quote", "parameters": {"type": "object", "properties": {}}}
    donor = FlockRecord(system="s", tools=json.dumps([other]),
                        conversations=[Turn(role="user", content="Hi"), Turn(role="assistant", content="Hello!")])
    edited = add_tool(weather("Porto", 19), Pools([donor, weather("Porto", 19)]), random.Random(0))
    assert edited is not None
    assert {t["name"] for t in edited.tool_list()} == {"get_weather", "get_stock_quote"}


def test_strategy_rows_validate_against_their_tools() -> None:
    records = load_jsonl(TASK).records
    plugin = FunctionCallingPlugin()
    strategy = FCMutationStrategy(plugin, records)
    rng = random.Random(0)
    for category in ("single_call", "multi_call"):
        for _ in range(4):
            done = strategy.complete(strategy.draft(category, rng), None)  # type: ignore[arg-type]
            assert isinstance(done, Candidate)
            assert plugin.categorize(done.record).primary == category
            assert check_function_calls(done.record).passed
