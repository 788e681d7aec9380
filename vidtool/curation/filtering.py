"""`vidtool filter`: keep the clips of a scored manifest that pass a `--where` condition and are not
near-duplicates of a clip kept before them; every dropped clip says why.

A record is dropped, checked in this order, when:
- `vidtool score` could not score it (its `score_error` column), rejected as "score error";
- it fails the `--where` condition (`vidtool.curation.where`): one reason per false clause;
- with `dedup` (a number of bits), its perceptual hash (`phash`) is within `dedup` bits of a clip
  already kept: the first clip of a group of look-alikes, in manifest order, is the one kept.

Dropped records carry `reason` (what failed, with the values read) and `rejected_by` (short keys:
the clause, "near-duplicate" or "score error") that the summary counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from vidtool.curation.where import Where
from vidtool.errors import UserError

HASH_COLUMN = "phash"
ERROR_COLUMN = "score_error"


@dataclass
class FilterResult:
    kept: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)

    def counts(self) -> Counter:
        """How many dropped records each reason key accounts for (a record failing two clauses counts twice)."""
        return Counter(key for record in self.rejected for key in record["rejected_by"])


class HashIndex:
    """Hashes kept so far, looked up by Hamming distance without comparing against all of them.

    Multi-index hashing (Norouzi et al. 2012): split the bits into `distance + 1` pieces; two hashes
    within `distance` bits agree exactly on at least one piece (pigeonhole), so only hashes sharing
    a piece with the query are compared."""

    def __init__(self, distance: int, bits: int = 64):
        self.distance, self.bits = distance, bits
        pieces = min(distance + 1, bits)
        self.bounds = [(i * bits // pieces, (i + 1) * bits // pieces) for i in range(pieces)]
        self.buckets: dict[tuple[int, int], list[tuple[int, str]]] = {}

    def _pieces(self, value: int):
        for i, (start, end) in enumerate(self.bounds):
            yield i, (value >> start) & ((1 << (end - start)) - 1)

    def nearest(self, value: int) -> tuple[int, str] | None:
        """(distance, label) of the closest indexed hash within `distance` bits, or None."""
        best = None
        for key in self._pieces(value):
            for other, label in self.buckets.get(key, ()):
                d = bin(value ^ other).count("1")
                if d <= self.distance and (best is None or d < best[0]):
                    best = (d, label)
        return best

    def add(self, value: int, label: str) -> None:
        for key in self._pieces(value):
            self.buckets.setdefault(key, []).append((value, label))


def parse_hash(record: dict, number: int) -> int:
    value = record.get(HASH_COLUMN)
    try:
        return int(value, 16)
    except (TypeError, ValueError):
        raise UserError(f"record {number} ({record['path']}) has no hex {HASH_COLUMN!r} column ({value!r}); "
                        "run `vidtool score` on the manifest before --dedup") from None


def filter_records(records: list[dict], where: Where | None = None, dedup: int | None = None) -> FilterResult:
    """Split `records` into kept and rejected (see the module docstring); input order is kept in both."""
    if where is not None:
        where.check_columns({key for record in records for key in record})
    if dedup is not None and dedup < 0:
        raise UserError(f"--dedup takes a number of bits >= 0, got {dedup}")
    index = HashIndex(dedup) if dedup is not None else None
    result = FilterResult()
    for number, record in enumerate(records, start=1):
        if record.get(ERROR_COLUMN):
            result.rejected.append({**record, "reason": f"score error: {record[ERROR_COLUMN]}",
                                    "rejected_by": ["score error"]})
            continue
        failures = where.failures(record) if where is not None else []
        if failures:
            result.rejected.append({**record, "reason": "; ".join(message for _, message in failures),
                                    "rejected_by": list(dict.fromkeys(key for key, _ in failures))})
            continue
        if index is not None:
            value = parse_hash(record, number)
            near = index.nearest(value)
            if near is not None:
                result.rejected.append({**record, "reason": f"near-duplicate of {near[1]} (hash distance {near[0]})",
                                        "rejected_by": ["near-duplicate"]})
                continue
            index.add(value, record["path"])
        result.kept.append(record)
    return result
