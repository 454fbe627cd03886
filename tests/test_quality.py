"""Every quality gate: format, validity (SQL, function calls, dialogue), category, length, dedup (exact, near,
persisted), decontamination, and each kind of personal data or secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.data import FlockRecord
from tools.quality import (
    CategoryGate,
    DecontaminationGate,
    DedupGate,
    DedupIndex,
    FormatGate,
    GateSuite,
    LengthGate,
    PrivacyGate,
    TaskValidityGate,
    default_gates,
    find_secret,
    luhn_valid,
    scrub_record,
)
from tools.tasks.base import meta_text, parse_labeled_turns
from tools.tasks.function_calling import FunctionCallingPlugin, check_function_calls
from tools.tasks.text2sql import Text2SQLPlugin

SCHEMA = ("CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT, country TEXT);\n"
          "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT, author_id INTEGER REFERENCES authors(id), "
          "year INTEGER);")
WEATHER_TOOL = {"name": "get_weather", "description": "Get the current weather for a city",
                "parameters": {"type": "object",
                               "properties": {"city": {"type": "string"},
                                              "units": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                               "required": ["city"]}}


def chat(user: str, assistant: str, system: str | None = None) -> FlockRecord:
    data: dict = {"conversations": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}
    if system is not None:
        data["system"] = system
    return FlockRecord.model_validate(data)


def sql_record(question: str, sql: str) -> FlockRecord:
    return chat(f"Schema:\n{SCHEMA}\n\nQuestion: {question}", sql)


def fc_record(arguments: dict, tool: dict = WEATHER_TOOL, observation: str | None = '{"temperature": 21}',
              name: str | None = None) -> FlockRecord:
    turns = [{"role": "user", "content": "Weather in Porto?"},
             {"role": "function_call", "content": json.dumps({"name": name or tool["name"], "arguments": arguments})}]
    if observation is not None:
        turns.append({"role": "observation", "content": observation})
    turns.append({"role": "assistant", "content": "It is 21 degrees in Porto."})
    return FlockRecord.model_validate({"conversations": turns, "tools": json.dumps([tool])})


# ----- format ------------------------------------------------------------------------------------------------
def test_format_gate_passes_valid_records_and_refuses_dead_trailing_turns() -> None:
    assert FormatGate().check(chat("Hi", "Hello"), "x").passed
    trailing = FlockRecord.model_validate({"conversations": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"}]})
    verdict = FormatGate().check(trailing, "x")
    assert (verdict.passed, verdict.reason) == (False, "format")
    assert "last turn is 'user'" in verdict.detail


# ----- validity ----------------------------------------------------------------------------------------------
def test_sql_validity_runs_the_query_on_the_schema() -> None:
    gate = TaskValidityGate("text2sql")
    good = sql_record("Titles of books after 2000?", "SELECT title FROM books WHERE year > 2000")
    assert gate.check(good, "filter").passed
    bad = gate.check(sql_record("Prices?", "SELECT price FROM books"), "filter")
    assert not bad.passed and bad.reason.startswith("sql_")
    assert "price" in bad.detail
    no_schema = gate.check(chat("Question: how many?", "SELECT 1"), "filter")
    assert no_schema.reason == "sql_no_schema"


def test_function_call_arguments_must_match_the_tool_schema() -> None:
    assert check_function_calls(fc_record({"city": "Porto", "units": "celsius"})).passed
    wrong_enum = check_function_calls(fc_record({"city": "Porto", "units": "kelvin"}))
    assert wrong_enum.reason == "fc_bad_arguments" and "units" in wrong_enum.detail
    missing = check_function_calls(fc_record({"units": "celsius"}))
    assert missing.reason == "fc_bad_arguments" and "'city' is a required property" in missing.detail
    wrong_type = check_function_calls(fc_record({"city": 42}))
    assert wrong_type.reason == "fc_bad_arguments"
    unknown = check_function_calls(fc_record({"city": "Porto"}, name="get_forecast"))
    assert unknown.reason == "fc_unknown_tool" and "get_forecast" in unknown.detail
    no_observation = check_function_calls(fc_record({"city": "Porto"}, observation=None))
    assert no_observation.reason == "fc_no_observation"


def test_dialogue_validity_checks_order_and_repeats() -> None:
    gate = TaskValidityGate("chat")
    assert gate.check(chat("Hi", "Hello"), "short").passed
    repeated = FlockRecord.model_validate({"conversations": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "Same reply."},
        {"role": "user", "content": "b"}, {"role": "assistant", "content": "same  reply."}]})
    assert gate.check(repeated, "short").reason == "chat_repeated_reply"
    doubled = FlockRecord.model_validate({"conversations": [
        {"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]})
    assert gate.check(doubled, "short").reason == "chat_bad_order"
    with pytest.raises(ValueError, match="no validity check for task 'vision'"):
        TaskValidityGate("vision")


# ----- category ----------------------------------------------------------------------------------------------
def test_category_gate_uses_the_plugin() -> None:
    gate = CategoryGate(Text2SQLPlugin())
    join = sql_record("Book titles with author names?",
                      "SELECT b.title, a.name FROM books AS b JOIN authors AS a ON b.author_id = a.id")
    assert gate.check(join, "join").passed
    verdict = gate.check(join, "nested")
    assert verdict.reason == "category_mismatch" and "'join'" in verdict.detail


# ----- length ------------------------------------------------------------------------------------------------
def test_length_gate_keeps_the_answer_inside_the_context(smol_tokenizer) -> None:
    short = chat("Hi", "Hello there")
    long = chat("word " * 400, "Hello there")
    gate = LengthGate(smol_tokenizer, "qwen1.5", context_length=128)
    assert gate.check(short, "short").passed
    verdict = gate.check(long, "short")
    assert verdict.reason == "too_long" and "> context length 128" in verdict.detail


# ----- dedup -------------------------------------------------------------------------------------------------
def test_dedup_catches_exact_and_near_duplicates_against_the_dataset() -> None:
    existing = [chat("What is the capital of France and what river runs through it?",
                     "Paris is the capital of France, and the Seine runs through it.")]
    gate = DedupGate("chat", existing=existing)
    exact = chat("what is the capital of France and  what river runs through it?",
                 "Paris is the capital of France, and the Seine runs through it.")
    assert gate.check(exact, "x").reason == "duplicate"
    near = chat("What is the capital of France and what river runs through it?",
                "Paris is the capital of France, and the Seine river runs through it.")
    verdict = gate.check(near, "x")
    assert verdict.reason == "near_duplicate"
    assert "similarity 0.8" in verdict.detail or "similarity 0.9" in verdict.detail
    different = chat("How do volcanoes form?", "Magma rises through cracks in the crust and erupts at the surface.")
    assert gate.check(different, "x").passed


def test_dedup_considers_the_sql_not_just_the_question() -> None:
    gate = DedupGate("text2sql", existing=[sql_record("Show book titles.", "SELECT title FROM books")])
    same_question_other_sql = sql_record("Show book titles.",
                                         "SELECT title FROM books WHERE year > 1990 ORDER BY year DESC LIMIT 5")
    assert gate.check(same_question_other_sql, "x").passed
    assert gate.check(sql_record("Show book titles.", "SELECT title FROM books"), "x").reason == "duplicate"


def test_dedup_within_a_batch_through_observe_and_across_iterations_through_save(tmp_path: Path) -> None:
    gate = DedupGate("chat")
    first = chat("Tell me a fact about octopuses.", "Octopuses have three hearts and blue blood.")
    assert gate.check(first, "x").passed
    gate.observe(first)
    assert gate.check(first, "x").reason == "duplicate"
    gate.index.save(tmp_path / "index.npz")
    reloaded = DedupGate("chat", index=DedupIndex.load(tmp_path / "index.npz"))
    assert len(reloaded.index) == 1
    near = chat("Tell me a fact about octopuses!", "Octopuses have three hearts and blue blood.")
    assert reloaded.check(near, "x").reason in ("duplicate", "near_duplicate")
    (tmp_path / "junk.npz").write_bytes(b"not an index")
    with pytest.raises(ValueError, match=r"junk\.npz: not a dedup index"):
        DedupIndex.load(tmp_path / "junk.npz")


def test_dedup_keeps_the_index_it_was_given_even_when_empty() -> None:
    index = DedupIndex()
    gate = DedupGate("chat", index=index)
    gate.observe(chat("Tell me a fact about octopuses.", "Octopuses have three hearts and blue blood."))
    assert gate.index is index and len(index) == 1


# ----- decontamination ---------------------------------------------------------------------------------------
def test_decontamination_rejects_overlap_with_dev_and_test() -> None:
    held_out = [chat("Which planet in our solar system has the most moons according to recent counts?",
                     "Saturn has the most confirmed moons, ahead of Jupiter.")]
    gate = DecontaminationGate("chat", held_out)
    copied = chat("Which planet in our solar system has the most moons according to recent counts?",
                  "Saturn has the most confirmed moons, ahead of Jupiter, as of 2023.")
    verdict = gate.check(copied, "x")
    assert verdict.reason == "contaminated" and "occur in dev/test" in verdict.detail
    clean = chat("How long is a day on Mars?", "A day on Mars lasts about 24 hours and 39 minutes.")
    assert gate.check(clean, "x").passed
    short_copy = chat("Hi", "Hello")
    assert DecontaminationGate("chat", [chat("Hi", "Hello")]).check(short_copy, "x").reason == "contaminated"


# ----- privacy -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "kind", "synthetic"), [
    pytest.param("Mail me at maria.lopez@gmail.com today.", "email", "user1@example.com", id="email"),
    pytest.param("Call me on (415) 867-5309 please.", "phone", "+1-202-555-0101", id="phone-us"),
    pytest.param("My number is +44 20 7946 1234.", "phone", "+1-202-555-0101", id="phone-intl"),
    pytest.param("Card 4539 1488 0343 6467 expires soon.", "card", "4111 1111 1111 1111", id="card"),
    pytest.param("The server is at 8.8.4.4 now.", "ip", "192.0.2.2", id="ipv4"),
    pytest.param("Reach 2a00:1450:4001:82b::200e over IPv6.", "ip", "2001:db8::1", id="ipv6"),
    pytest.param("My SSN is 123-45-6789.", "ssn", "000-00-0001", id="ssn"),
])
def test_personal_identifiers_are_replaced_with_synthetic_values(text: str, kind: str, synthetic: str) -> None:
    verdict = PrivacyGate().check(chat(text, "Noted."), "x")
    assert verdict.passed and verdict.record is not None
    scrubbed = verdict.record.first_user_text()
    assert synthetic in scrubbed
    assert kind in verdict.detail


@pytest.mark.parametrize("text", [
    "Write to support@example.com or test@sub.example.org.",
    "Call 555-0123 or (202) 555-0147.",
    "Use the test card 4111 1111 1111 1111.",
    "Order 1234 5678 9012 3456 shipped.",  # 16 digits failing the Luhn check: an order number, not a card
    "Router at 192.168.1.1, docs at 192.0.2.7, localhost 127.0.0.1.",
    "The meeting is on 2025-03-22 at 20:00, room 12:30:45.",
    "Transfer 1 000 000 dollars by 10.05.2025.",
    "Send 0.5 ETH to 0x52908400098527886E0F7030069857D2E4169EE7, tx 0x" + "ab12" * 16 + ".",
])
def test_synthetic_and_harmless_values_are_left_alone(text: str) -> None:
    verdict = PrivacyGate().check(chat(text, "Noted."), "x")
    assert verdict.passed
    assert verdict.record is None, verdict.detail


@pytest.mark.parametrize(("secret", "kind"), [
    ("sk-proj-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4", "openai_key"),
    ("hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ012345", "huggingface_token"),
    ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_key"),
    ("ghp_" + "A" * 10 + "b" * 10 + "1" * 16, "github_token"),
    ("xoxb-123456789012-abcdefABCDEF", "slack_token"),
    ("AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "google_api_key"),
    ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "stripe_key"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "jwt"),
    ("-----BEGIN RSA PRIVATE KEY-----", "private_key"),
    ("token 3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c9e2b4d6f8a", "hex_secret"),
    ("secret: Zm9vYmFyQmF6UXV4MTIzNDU2Nzg5MEFCQ0RFRkdIaWprbG1ub3A=", "base64_secret"),
])
def test_secrets_are_rejected_with_their_kind_and_never_echoed(secret: str, kind: str) -> None:
    record = chat("Here is my key, store it safely.", f"Stored: {secret}")
    verdict = PrivacyGate().check(record, "x")
    assert not verdict.passed
    assert verdict.reason == f"privacy_secret:{kind}"
    assert "conversations[1]" in verdict.detail
    assert secret not in verdict.detail


def test_replacement_is_consistent_across_turns_and_keeps_function_calls_valid() -> None:
    tool = {"name": "send_email", "description": "Send an email",
            "parameters": {"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]}}
    record = FlockRecord.model_validate({"conversations": [
        {"role": "user", "content": "Email lena@corp.com and raj@corp.com."},
        {"role": "function_call", "content": json.dumps({"name": "send_email", "arguments": {"to": "raj@corp.com"}})},
        {"role": "observation", "content": '{"status": "sent"}'},
        {"role": "assistant", "content": "Sent to raj@corp.com."}], "tools": json.dumps([tool])})
    result = scrub_record(record)
    turns = [t.content for t in result.record.conversations]
    assert turns[0] == "Email user1@example.com and user2@example.com."
    assert json.loads(turns[1])["arguments"]["to"] == "user2@example.com"
    assert turns[3] == "Sent to user2@example.com."
    assert result.replaced == {"email": 2}
    assert check_function_calls(result.record).passed


def test_luhn_and_secret_helpers() -> None:
    assert luhn_valid("4539148803436467")
    assert not luhn_valid("1234567890123456")
    assert find_secret("nothing to see here") is None


# ----- model-written text ------------------------------------------------------------------------------------
def test_labeled_turns_and_meta_text() -> None:
    text = "Sure! Here is the conversation:\nUSER 1: Hi there\nASSISTANT 1: Hello!\nIt continues.\n**User 2:** Bye"
    assert parse_labeled_turns(text) == [("user", "Hi there"), ("assistant", "Hello! It continues."),
                                         ("user", "Bye")]
    assert meta_text("Here is the conversation you asked for") is not None
    assert meta_text("The answer is: 42") is not None
    assert meta_text("Paris is the capital of France.") is None


# ----- suite -------------------------------------------------------------------------------------------------
def test_suite_runs_in_order_passes_rewrites_on_and_stops_at_the_first_failure() -> None:
    plugin = FunctionCallingPlugin()
    suite = default_gates(plugin, existing=[], held_out=[])
    assert [g.name for g in suite.gates] == ["format", "privacy", "validity", "category", "dedup",
                                             "decontamination"]
    record = fc_record({"city": "Porto"}, observation='{"temperature": 21, "contact": "ops@weather.io"}')
    outcome = suite.run(record, "single_call")
    assert outcome.passed
    assert [r.gate for r in outcome.results] == [g.name for g in suite.gates]
    assert "user1@example.com" in outcome.record.conversations[2].content
    assert outcome.results[1].detail == "replaced 1 email"
    suite.observe(outcome.record)
    again = suite.run(record, "single_call")
    assert not again.passed
    assert again.failure is not None and again.failure.gate == "dedup"
    wrong = suite.run(fc_record({"city": "Lisbon"}), "multi_call")
    assert [r.gate for r in wrong.results][-1] == "category"
    with pytest.raises(ValueError, match="duplicate gate names"):
        GateSuite([FormatGate(), FormatGate()])
