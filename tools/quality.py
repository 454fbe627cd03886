"""Quality gates for generated examples.

Each check is a small function that returns a :class:`~tools.tasks.base.GateCheck`: passed, or failed with a
machine-readable reason code (and, for the privacy scrub, possibly a rewritten record). A :class:`GateSuite` runs
gates in order, stops at the first failure, and returns every result for the row's provenance.

Thresholds (and why):

* Near-duplicates: MinHash (128 permutations) over word 3-gram shingles (punctuation dropped) of the example's
  *content text* (the task plugin's :meth:`~tools.tasks.base.TaskPlugin.content_text`: for text-to-SQL the
  question plus the SQL, since SQL-first data differs mostly in the query and the schema repeats; otherwise every
  non-system turn). Two examples whose estimated Jaccard similarity is >= 0.8 are near-duplicates, the usual
  setting for near-dedup of training data (e.g. the BigCode/The Stack pipeline). LSH finds candidates; each is
  confirmed on the MinHash estimate.
* Contamination: word 8-grams of the content text. An example is contaminated when >= 50% of its 8-grams occur
  in the dev or test split (shorter examples: when their whole token sequence does). 8 words is long enough that
  shared boilerplate ("Can you please tell me the ...") rarely matches, short enough to catch a lightly
  paraphrased copy of a short question.
* Privacy: personal identifiers are *replaced* by clearly synthetic values, so the example keeps its shape:
  emails -> ``userN@example.com`` (RFC 2606), phone numbers -> the fictional ``555-01NN`` range, payment card
  numbers (13-19 digits passing the Luhn check) -> the public test card ``4111 1111 1111 1111``, IPv4/IPv6
  addresses -> documentation ranges (RFC 5737 / RFC 3849), US social security numbers -> ``000-00-NNNN``
  (area 000 is never issued). Secrets are *rejected* (reason ``privacy_secret:<kind>``): API keys and tokens
  (OpenAI ``sk-``, Hugging Face ``hf_``, AWS ``AKIA``/secret keys, GitHub, Slack, Google, Stripe), JWTs,
  private-key blocks, and long high-entropy hex/base64 strings. A key-shaped string teaches the model to emit
  key-shaped strings whatever its value, so no replacement makes such an example safe. ``0x``-prefixed hex
  (blockchain addresses and transaction hashes, which are public) is not a secret.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH
from pydantic import BaseModel

from tools.data import FlockRecord, Turn, validate_line
from tools.tasks import PLUGINS, as_plugin
from tools.tasks.base import GateCheck, TaskPlugin, fail, ok
from tools.text import ngrams, normalized_hash, tokens

NEAR_DUP_THRESHOLD = 0.8
NUM_PERM = 128
SHINGLE_WORDS = 3
CONTAMINATION_NGRAM = 8
CONTAMINATION_THRESHOLD = 0.5
_MINHASH_SEED = 1
_MINHASH_SCHEME = "affine32"


# ----- results -----------------------------------------------------------------------------------------------
class GateResult(BaseModel):
    """A gate's verdict as recorded in provenance."""

    gate: str
    passed: bool
    reason: str = ""
    detail: str = ""
    seconds: float = 0.0


class Gate(Protocol):
    """A quality gate. Stateful gates (dedup) also learn from accepted records through ``observe``."""

    name: str

    def check(self, record: FlockRecord, category: str) -> GateCheck: ...

    def observe(self, record: FlockRecord) -> None: ...


class _Stateless:
    def observe(self, record: FlockRecord) -> None:
        """Stateless gates learn nothing from accepted records."""


# ----- format ------------------------------------------------------------------------------------------------
def check_format(record: FlockRecord) -> GateCheck:
    """The record survives a FLock JSONL round trip and FLock's loaders' assumptions."""
    line = record.to_json_line()
    parsed, problems = validate_line(line.encode("utf-8"), file="<generated>", line=1)
    if parsed is None:
        return fail("format", "; ".join(str(p) for p in problems))
    if parsed != record or parsed.to_json_line() != line:
        return fail("format", "record changes in a JSON round trip")
    if record.conversations[-1].role != "assistant":
        # FLock drops trailing non-assistant text; a generated example should not carry dead text.
        return fail("format", f"last turn is {record.conversations[-1].role!r}, expected 'assistant'")
    return ok()


class FormatGate(_Stateless):
    name = "format"

    def check(self, record: FlockRecord, category: str) -> GateCheck:
        return check_format(record)


# ----- task validity -----------------------------------------------------------------------------------------
class TaskValidityGate(_Stateless):
    """Task-specific validity, the plugin's check: SQL executes, function calls match their schemas, dialogue is
    well formed."""

    name = "validity"

    def __init__(self, task: TaskPlugin | str):
        try:
            self.plugin = as_plugin(task)
        except ValueError:
            raise ValueError(f"no validity check for task {task!r}; known: {', '.join(PLUGINS)}") from None

    def check(self, record: FlockRecord, category: str) -> GateCheck:
        return self.plugin.check_validity(record)


# ----- category ----------------------------------------------------------------------------------------------
class CategoryGate(_Stateless):
    """The plugin's categorizer agrees with the category the example was generated for."""

    name = "category"

    def __init__(self, plugin: TaskPlugin):
        self.plugin = plugin

    def check(self, record: FlockRecord, category: str) -> GateCheck:
        got = self.plugin.categorize(record).primary
        if got != category:
            return fail("category_mismatch", f"categorized as {got!r}, generated for {category!r}")
        return ok()


# ----- length ------------------------------------------------------------------------------------------------
class LengthGate(_Stateless):
    """The whole example fits the task's context length, so FLock's truncation cannot cut the answer."""

    name = "length"

    def __init__(self, tokenizer: Any, template: Any, context_length: int):
        self.tokenizer = tokenizer
        self.template = template
        self.context_length = context_length

    def check(self, record: FlockRecord, category: str) -> GateCheck:
        from tools.templates import tokenize_record

        # Tokenize with room to spare so the full length is known, then compare.
        example = tokenize_record(record, self.tokenizer, self.template, self.context_length * 4 + 64)
        length = len(example.input_ids)
        if length > self.context_length:
            return fail("too_long", f"{length} tokens > context length {self.context_length}")
        if not any(example.target_mask):
            return fail("no_target_tokens", "no assistant tokens after tokenization")
        return ok(f"{length} tokens")


# ----- dedup -------------------------------------------------------------------------------------------------
class DedupIndex:
    """Exact hashes and MinHash signatures of content texts, with an LSH index, persistable across iterations."""

    def __init__(self, threshold: float = NEAR_DUP_THRESHOLD, num_perm: int = NUM_PERM):
        self.threshold = threshold
        self.num_perm = num_perm
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.exact: dict[str, str] = {}
        self.signatures: dict[str, LeanMinHash] = {}
        self._template = MinHash(num_perm=num_perm, seed=_MINHASH_SEED, scheme=_MINHASH_SCHEME)

    def signature(self, text: str) -> LeanMinHash:
        # Words only: punctuation changes make no new example.
        shingles = ngrams([t for t in tokens(text) if t[0].isalnum() or t[0] == "_"], SHINGLE_WORDS)
        minhash = MinHash(num_perm=self.num_perm, seed=_MINHASH_SEED, scheme=_MINHASH_SCHEME,
                          permutations=self._template.permutations)
        minhash.update_batch([s.encode("utf-8") for s in sorted(shingles)])
        return LeanMinHash(minhash)

    def find(self, text: str) -> tuple[str, str, float] | None:
        """``(kind, key, similarity)`` of an indexed duplicate of ``text``, or None."""
        exact_key = self.exact.get(normalized_hash(text))
        if exact_key is not None:
            return "exact", exact_key, 1.0
        signature = self.signature(text)
        best: tuple[str, str, float] | None = None
        for key in self.lsh.query(signature):
            similarity = signature.jaccard(self.signatures[key])
            if similarity >= self.threshold and (best is None or similarity > best[2]):
                best = ("near", key, similarity)
        return best

    def add(self, key: str, text: str) -> None:
        """Index ``text`` under ``key`` (idempotent)."""
        if key in self.signatures:
            return
        self.exact.setdefault(normalized_hash(text), key)
        signature = self.signature(text)
        self.signatures[key] = signature
        self.lsh.insert(key, signature)

    def __len__(self) -> int:
        return len(self.signatures)

    def save(self, path: str | Path) -> None:
        """Persist keys, exact hashes and signatures (npz), atomically."""
        import io

        from tools.datastore import atomic_write_bytes

        keys = list(self.signatures)
        matrix = np.stack([self.signatures[k].hashvalues for k in keys]) if keys else \
            np.zeros((0, self.num_perm), dtype=np.uint32)
        exact = sorted(self.exact.items())
        buffer = io.BytesIO()
        np.savez(buffer, keys=np.array(keys, dtype=str), hashvalues=matrix,
                 exact_hashes=np.array([h for h, _ in exact], dtype=str),
                 exact_keys=np.array([k for _, k in exact], dtype=str),
                 params=np.array([self.threshold, self.num_perm], dtype=float))
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> DedupIndex:
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                threshold, num_perm = (float(v) for v in data["params"])
                index = cls(threshold=threshold, num_perm=int(num_perm))
                for key, values in zip(data["keys"].tolist(), data["hashvalues"], strict=True):
                    signature = LeanMinHash(seed=_MINHASH_SEED, hashvalues=values, scheme=_MINHASH_SCHEME)
                    index.signatures[key] = signature
                    index.lsh.insert(key, signature)
                index.exact = dict(zip(data["exact_hashes"].tolist(), data["exact_keys"].tolist(), strict=True))
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a dedup index saved by DedupIndex.save ({exc})") from None
        return index


class DedupGate:
    """Rejects exact and near-duplicates of anything indexed: the dataset, earlier iterations, earlier rows of
    this generation (accepted rows are added through ``observe``)."""

    name = "dedup"

    def __init__(self, task: TaskPlugin | str, index: DedupIndex | None = None, existing: Iterable[FlockRecord] = ()):
        self.plugin = as_plugin(task)
        self.index = index if index is not None else DedupIndex()
        for record in existing:
            self.observe(record)

    def check(self, record: FlockRecord, category: str) -> GateCheck:
        found = self.index.find(self.plugin.content_text(record))
        if found is None:
            return ok()
        kind, key, similarity = found
        reason = "duplicate" if kind == "exact" else "near_duplicate"
        return fail(reason, f"matches {key} (similarity {similarity:.2f})")

    def observe(self, record: FlockRecord) -> None:
        self.index.add(record.record_id, self.plugin.content_text(record))


# ----- decontamination ---------------------------------------------------------------------------------------
class DecontaminationGate(_Stateless):
    """Rejects examples whose content overlaps the dev or test split (word 8-grams, >= 50% of the example's)."""

    name = "decontamination"

    def __init__(self, task: TaskPlugin | str, held_out: Iterable[FlockRecord], n: int = CONTAMINATION_NGRAM,
                 threshold: float = CONTAMINATION_THRESHOLD):
        self.plugin = as_plugin(task)
        self.n = n
        self.threshold = threshold
        self.held_out_ngrams: set[str] = set()
        for record in held_out:
            self.held_out_ngrams |= ngrams(tokens(self.plugin.content_text(record)), n)

    def check(self, record: FlockRecord, category: str) -> GateCheck:
        grams = ngrams(tokens(self.plugin.content_text(record)), self.n)
        if not grams:
            return ok()
        shared = len(grams & self.held_out_ngrams)
        ratio = shared / len(grams)
        if ratio >= self.threshold:
            return fail("contaminated", f"{shared} of {len(grams)} {self.n}-grams occur in dev/test ({ratio:.0%})")
        return ok(f"{ratio:.0%} overlap")


# ----- privacy -----------------------------------------------------------------------------------------------
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])")
_SYNTHETIC_EMAIL_DOMAIN = re.compile(r"@(?:[\w-]+\.)*(?:example\.(?:com|org|net)|example|test|invalid|localhost)$",
                                     re.IGNORECASE)
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_TEST_CARDS = {"4111111111111111", "4242424242424242", "5555555555554444", "378282246310005"}
_SSN = re.compile(r"(?<![\w-])(\d{3})-(\d{2})-(\d{4})(?![\w-])")
_PHONE = re.compile(
    # International (+CC ...) or North-American 3-3-4 shapes only: looser patterns eat amounts and dates.
    r"(?<![\w+])\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}(?![\w-])"
    r"|(?<![\w+(])(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-])"
)
_FICTIONAL_PHONE = re.compile(r"555[ .-]?01\d\d$")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]

SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "openai_key": re.compile(r"(?<![\w-])sk-(?:proj-|ant-|live-)?[A-Za-z0-9_-]{20,}"),
    "huggingface_token": re.compile(r"(?<!\w)hf_[A-Za-z0-9]{30,}"),
    "aws_access_key": re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])"),
    "aws_secret_key": re.compile(r"(?i)aws[\w\s\"':=-]{0,30}?(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"),
    "github_token": re.compile(r"(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    "slack_token": re.compile(r"(?<!\w)xox[abprs]-[A-Za-z0-9-]{10,}"),
    "google_api_key": re.compile(r"(?<!\w)AIza[0-9A-Za-z_-]{35}"),
    "stripe_key": re.compile(r"(?<!\w)[rsp]k_(?:live|test)_[0-9A-Za-z]{16,}"),
    "jwt": re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "private_key": re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"),
}
_LONG_HEX = re.compile(r"(?<![0-9A-Za-z])(?<!0x)(?<!0X)[0-9a-fA-F]{32,}(?![0-9A-Za-z])")
_LONG_B64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{40,}={0,2}(?![A-Za-z0-9+/_-])")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def find_secret(text: str) -> tuple[str, str] | None:
    """``(kind, masked excerpt)`` of the first secret in ``text``, or None."""
    for kind, pattern in SECRET_PATTERNS.items():
        match = pattern.search(text)
        if match:
            return kind, _mask(match.group())
    for match in _LONG_HEX.finditer(text):
        value = match.group()
        if re.search(r"[a-fA-F]", value) and re.search(r"\d", value):
            return "hex_secret", _mask(value)
    for match in _LONG_B64.finditer(text):
        value = match.group().rstrip("=")
        classes = sum(bool(re.search(p, value)) for p in ("[a-z]", "[A-Z]", r"\d"))
        if classes == 3 and _entropy(value) >= 4.2:
            return "base64_secret", _mask(value)
    return None


def _mask(value: str) -> str:
    """Enough of a secret to locate it in a report, never the secret itself."""
    return f"{value[:4]}…({len(value)} chars)"


class _Replacer:
    """Maps each distinct real value to a numbered synthetic one, consistently within a record (so the same
    email in the user turn and the function-call arguments gets the same replacement)."""

    def __init__(self) -> None:
        self.maps: dict[str, dict[str, str]] = {}

    def get(self, kind: str, value: str, make: Callable[[int], str]) -> str:
        table = self.maps.setdefault(kind, {})
        if value not in table:
            table[value] = make(len(table) + 1)
        return table[value]

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.maps.items() if v}


def _scrub_text(text: str, replacer: _Replacer) -> str:
    def email(m: re.Match[str]) -> str:
        value = m.group()
        if _SYNTHETIC_EMAIL_DOMAIN.search(value):
            return value
        return replacer.get("email", value.lower(), lambda n: f"user{n}@example.com")

    def card(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group())
        if not 13 <= len(digits) <= 19 or not luhn_valid(digits) or digits in _TEST_CARDS:
            return m.group()
        return replacer.get("card", digits, lambda n: "4111 1111 1111 1111")

    def ssn(m: re.Match[str]) -> str:
        if m.group(1) in ("000", "666") or m.group(1).startswith("9"):
            return m.group()  # never issued: already synthetic
        return replacer.get("ssn", m.group(), lambda n: f"000-00-{n:04d}")

    def phone(m: re.Match[str]) -> str:
        value = m.group()
        digits = re.sub(r"\D", "", value)
        if not 7 <= len(digits) <= 15 or _FICTIONAL_PHONE.search(value):
            return value
        return replacer.get("phone", digits, lambda n: f"+1-202-555-01{n % 100:02d}")

    def ip(m: re.Match[str]) -> str:
        value = m.group()
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return value
        if not address.is_global or any(address in net for net in _DOC_NETS):
            return value  # private, loopback and reserved addresses identify no one
        if address.version == 4:
            return replacer.get("ip", value, lambda n: f"192.0.2.{n % 254 + 1}")
        return replacer.get("ip", value, lambda n: f"2001:db8::{n:x}")

    text = _EMAIL.sub(email, text)
    text = _CARD.sub(card, text)
    text = _SSN.sub(ssn, text)
    text = _IPV4.sub(ip, text)
    text = _IPV6.sub(ip, text)
    return _PHONE.sub(phone, text)


@dataclass(frozen=True)
class ScrubResult:
    record: FlockRecord
    replaced: dict[str, int]
    secret: tuple[str, str, str] | None  # (kind, field, masked excerpt)


def scrub_record(record: FlockRecord) -> ScrubResult:
    """Replace personal identifiers in the system prompt and every turn; report the first secret found."""
    fields: list[tuple[str, str]] = [("system", record.system or "")]
    fields += [(f"conversations[{i}]", t.content) for i, t in enumerate(record.conversations)]
    for name, text in fields:
        found = find_secret(text)
        if found:
            return ScrubResult(record, {}, (found[0], name, found[1]))
    replacer = _Replacer()
    system = _scrub_text(record.system, replacer) if record.system is not None else None
    turns = [Turn(role=t.role, content=_scrub_text(t.content, replacer)) for t in record.conversations]
    counts = replacer.counts()
    if not counts:
        return ScrubResult(record, {}, None)
    scrubbed = FlockRecord(system=system, conversations=turns, tools=record.tools)
    return ScrubResult(scrubbed, counts, None)


class PrivacyGate(_Stateless):
    """Replaces personal identifiers with synthetic values; rejects examples that carry a secret."""

    name = "privacy"

    def check(self, record: FlockRecord, category: str) -> GateCheck:
        result = scrub_record(record)
        if result.secret is not None:
            kind, where, excerpt = result.secret
            return fail(f"privacy_secret:{kind}", f"{where}: {excerpt}")
        if result.replaced:
            detail = "replaced " + ", ".join(f"{n} {k}" for k, n in sorted(result.replaced.items()))
            return ok(detail, result.record)
        return ok()


# ----- suite -------------------------------------------------------------------------------------------------
@dataclass
class SuiteOutcome:
    passed: bool
    record: FlockRecord
    results: list[GateResult]

    @property
    def failure(self) -> GateResult | None:
        return next((r for r in self.results if not r.passed), None)


class GateSuite:
    """Runs gates in order on a candidate (each seeing the previous gates' rewrites), stopping at the first
    failure."""

    def __init__(self, gates: Sequence[Gate]):
        names = [g.name for g in gates]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate gate names: {names}")
        self.gates = list(gates)

    def run(self, record: FlockRecord, category: str) -> SuiteOutcome:
        results: list[GateResult] = []
        for gate in self.gates:
            start = time.perf_counter()
            try:
                verdict = gate.check(record, category)
            except ImportError:
                raise  # a missing module is a broken install, not a bad row
            except Exception as exc:  # a gate that crashes rejects the row instead of killing the generation
                verdict = fail(f"{gate.name}_error", f"{type(exc).__name__}: {exc}")
            results.append(GateResult(gate=gate.name, passed=verdict.passed, reason=verdict.reason,
                                      detail=verdict.detail, seconds=round(time.perf_counter() - start, 6)))
            if not verdict.passed:
                return SuiteOutcome(False, record, results)
            if verdict.record is not None:
                record = verdict.record
        return SuiteOutcome(True, record, results)

    def observe(self, record: FlockRecord) -> None:
        """Tell stateful gates about an accepted record."""
        for gate in self.gates:
            gate.observe(record)


def default_gates(
    plugin: TaskPlugin,
    *,
    existing: Iterable[FlockRecord] = (),
    held_out: Iterable[FlockRecord] = (),
    dedup_index: DedupIndex | None = None,
    length: LengthGate | None = None,
) -> GateSuite:
    """The standard order: cheap structural checks first, the scrub before anything reads values, then
    validity, category, length, and the dataset-wide checks last."""
    gates: list[Gate] = [FormatGate(), PrivacyGate(), TaskValidityGate(plugin), CategoryGate(plugin)]
    if length is not None:
        gates.append(length)
    gates.append(DedupGate(plugin, dedup_index, existing))
    gates.append(DecontaminationGate(plugin, held_out))
    return GateSuite(gates)
