"""Event reads that keep working on hosted providers, whatever the job's age.

Hosted providers refuse ``eth_getLogs`` over a few thousand blocks, or over a result
size, and rate-limit the calls. Ape's own paging has a fixed page (5,000 blocks on the
node provider, 100 on ape-foundry) and every query of the old code started at the
deploy block. Here:

- a query names its block range (a round's start block, a round's closing block, a
  cursor), never the deploy block by default;
- pages are as large as the provider takes: a refused page is halved and retried, a
  range refusal lowers the ceiling for the rest of the process (so the next query
  does not pay for the refusal again), a result-size refusal only splits that page;
- several events of one contract are one query (``topics[0]`` is a list);
- :class:`Cursor` remembers, in a small JSON file, the last block a party read, so a
  restarted party does not read the job's history again.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

# First page tried; grown up to MAX_SPAN while the provider accepts, lowered for good on a range refusal.
FIRST_SPAN = 5_000
MAX_SPAN = 100_000

# What hosted providers say when they refuse a range or a result size (Infura, Alchemy, QuickNode,
# Ankr, Cloudflare, geth's and erigon's own limits, our tests' proxy).
_RANGE_REFUSAL = re.compile(r"block range|range (is )?too (large|wide|big)|exceed(s|ed)? .*range|max(imum)? .*range"
                            r"|range limit|too many blocks|blocks? range|limited to \d+ block", re.I)
_SIZE_REFUSAL = re.compile(r"more than \d+ (results|logs)|too many (results|logs)|response size|result size"
                           r"|query timeout|timed out|limit exceeded|exceeds? .*results", re.I)


class LogQueryError(RuntimeError):
    """A log query the provider refused even for a single block (or for another reason)."""


def classify_refusal(message: str) -> str | None:
    """"range", "size", or None when the error is not a refusal of the query's size."""
    if _RANGE_REFUSAL.search(message):
        return "range"
    if _SIZE_REFUSAL.search(message):
        return "size"
    return None


def _named_limit(message: str, width: int) -> int | None:
    """The block limit a refusal names ("up to a 2K block range", "max 2000 blocks"), if below `width`."""
    found = []
    for number, kilo in re.findall(r"(?<![0-9a-fA-Fx])([0-9][0-9,]*)\s*([kK])?\s*-?\s*blocks?\b", message):
        n = int(number.replace(",", "")) * (1000 if kilo else 1)
        if 1 <= n < width:
            found.append(n)
    return max(found) if found else None


def _message(exc: Exception) -> str:
    parts = [str(exc)]
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, dict):
            parts.append(str(arg.get("message", "")))
    return " ".join(parts)


@dataclass
class LogPager:
    """Pages one query over [start, end], shrinking on refusals; counts the calls it makes."""

    fetch: Callable[[dict[str, Any]], list[Any]]  # one eth_getLogs with a filter dict
    span: int = FIRST_SPAN
    ceiling: int = MAX_SPAN
    calls: int = 0
    refusals: int = 0

    def get(self, address: str, topics: list[Any], start: int, end: int) -> list[Any]:
        out: list[Any] = []
        lo = start
        while lo <= end:
            span = max(1, min(self.span, self.ceiling))
            hi = min(end, lo + span - 1)
            filt = {"address": address, "fromBlock": hex(lo), "toBlock": hex(hi), "topics": topics}
            self.calls += 1
            try:
                logs = self.fetch(filt)
            except Exception as exc:  # noqa: BLE001 - the provider's refusal comes as any exception type
                kind = classify_refusal(_message(exc))
                if kind is None:
                    raise
                self.refusals += 1
                width = hi - lo + 1
                if width == 1:
                    raise LogQueryError(f"the node refuses eth_getLogs even for block {lo} ({_message(exc)[:200]}); "
                                        "use another provider or a node of your own") from None
                if kind == "range":  # for the rest of the process: the limit it names, or half the refused page
                    self.ceiling = _named_limit(_message(exc), width) or max(1, width // 2)
                self.span = max(1, width // 2)
                continue
            out.extend(logs)
            lo = hi + 1
            self.span = min(self.ceiling, span * 2)  # accepted: try a larger page next
        return out


def topic_of(abi_type: str, value: Any) -> str:
    from eth_abi import encode

    return "0x" + encode([abi_type], [value]).hex()


@dataclass
class EventReader:
    """Decoded events of one contract over an explicit block range, through one :class:`LogPager`."""

    contract: Any  # an Ape ContractInstance
    pager: LogPager | None = None

    def __post_init__(self) -> None:
        if self.pager is None:
            self.pager = LogPager(_web3_get_logs)

    def _abi(self, name: str) -> Any:
        return getattr(self.contract, name).abi

    def read(self, names: str | Sequence[str], start: int, end: int | None = None, **indexed: Any) -> list[Any]:
        """Events `names` in blocks [start, end] (end: the head), in chain order.

        `indexed` filters on indexed arguments shared by all the events by name (e.g. roundId=3).
        """
        from ape import chain

        from .chain import head_block

        names = [names] if isinstance(names, str) else list(names)
        abis = [self._abi(n) for n in names]
        end = head_block() if end is None else end
        if end < start:
            return []
        topics: list[Any] = [["0x" + _selector(a).hex() for a in abis]]
        if indexed:
            position = [inp.name for inp in abis[0].inputs if inp.indexed]
            types = {inp.name: inp.type for inp in abis[0].inputs if inp.indexed}
            if not set(indexed) <= set(position):
                raise ValueError(f"{names[0]} has no indexed argument {sorted(set(indexed) - set(position))}")
            last = max(position.index(k) for k in indexed)
            for a in abis[1:]:  # the filtered topics must mean the same in every event of the query
                if [inp.name for inp in a.inputs if inp.indexed][:last + 1] != position[:last + 1]:
                    raise ValueError(f"events {names} do not share their indexed arguments {position[:last + 1]}")
            for k in position[:last + 1]:
                topics.append(topic_of(types[k], indexed[k]) if k in indexed else None)
        raw = self.pager.get(str(self.contract.address), topics, start, end)
        raw.sort(key=lambda log: (_num(log["blockNumber"]), _num(log["logIndex"])))
        return list(chain.provider.network.ecosystem.decode_logs([_plain(log) for log in raw], *abis))


def _selector(abi: Any) -> bytes:
    from eth_utils import keccak

    return keccak(text=abi.selector)


def _plain(log: Any) -> dict[str, Any]:
    """A web3 log (AttributeDict with HexBytes) as the plain dict Ape decodes."""
    def hx(v: Any) -> Any:
        return "0x" + bytes(v).hex() if isinstance(v, (bytes, bytearray)) else v

    d = dict(log)
    d["topics"] = [hx(t) for t in d.get("topics", [])]
    for k in ("data", "blockHash", "transactionHash"):
        if k in d:
            d[k] = hx(d[k])
    return d


def _web3_get_logs(filt: dict[str, Any]) -> list[Any]:
    """One eth_getLogs: raw JSON-RPC on a node (web3's formatting cost 8x the node's time on Anvil),
    web3's own on the embedded chain (eth-tester's raw answers are not JSON-RPC's)."""
    from ape import chain

    from .chain import _rpc

    if chain.provider.name == "test":
        return list(chain.provider.web3.eth.get_logs(filt))
    return list(_rpc(chain.provider.web3, "eth_getLogs", [filt]) or [])


def _num(v: Any) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


@dataclass
class Cursor:
    """The next block a party has to read, and what it learned so far, kept in a JSON file (optional).

    A restarted party continues from its cursor instead of reading the job's history again. One
    file holds the cursors of several jobs and readers, each under its `key`.
    """

    path: Path | None
    key: str
    block: int
    items: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None, key: str, default_block: int) -> "Cursor":
        """The saved cursor under `key`, or one at `default_block` (an unreadable file starts afresh)."""
        data = _read_json(path).get(key) if path is not None else None
        if isinstance(data, dict) and isinstance(data.get("block"), int) and data["block"] >= default_block:
            return cls(path, key, int(data["block"]), [str(x) for x in data.get("items", [])])
        return cls(path, key, default_block)

    def advance(self, block: int, new_items: Iterable[str] = ()) -> None:
        """Everything before `block` is read; `new_items` were learned from it. Saved at once."""
        for x in new_items:
            if x not in self.items:
                self.items.append(x)
        self.block = block
        if self.path is None:
            return
        path = Path(self.path)
        data = _read_json(path)
        data[self.key] = {"block": self.block, "items": self.items}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        tmp.replace(path)


def _read_json(path: Path | None) -> dict[str, Any]:
    if path is None or not Path(path).exists():
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
