"""Prompt cache in RAM: KV states of sequences a slot had to give up, to be loaded back when a
prompt starting with the same tokens returns (the next turn of a conversation, the same long
system prompt), as llama-server's `--cache-ram` does.

A slot holds the KV of the last sequence it served, so a returning prompt that finds its slot
intact skips recomputing the shared prefix. With more conversations than slots, the slot is
gone by the time the conversation returns; its state, saved here when the slot was taken
over, is copied back instead of recomputed. Copying a state costs a memcpy of its KV
(about 23 KB per token for a 135M model); recomputing it costs a forward pass.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

# Shorter prefixes are cheaper to recompute than to save and look up.
MIN_CACHED_TOKENS = 64


@dataclass
class _Entry:
    tokens: list[int]
    adapter: str | None
    state: bytes


def shared_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class PromptCache:
    """Saved sequence states, least recently used dropped first, at most `limit_bytes`."""

    def __init__(self, llama: Any, ctx: Any, limit_bytes: int) -> None:
        self._llama, self._ctx = llama, ctx
        self.limit_bytes = limit_bytes
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._ids = 0
        self.bytes = 0
        self.hits = 0  # states loaded back into a slot
        self.saved = 0

    def __len__(self) -> int:
        return len(self._entries)

    def save(self, slot: int, tokens: list[int], adapter: str | None) -> None:
        """Keep the KV state of `slot` (which holds `tokens`) before the slot is reused."""
        if len(tokens) < MIN_CACHED_TOKENS or self.limit_bytes <= 0:
            return
        for key, entry in list(self._entries.items()):
            # A saved prefix of these tokens adds nothing: the new state covers it.
            if entry.adapter == adapter and shared_prefix(entry.tokens, tokens) == len(
                entry.tokens
            ):
                self._drop(key)
        size = self._llama.llama_state_seq_get_size(self._ctx.ctx, slot)
        if size <= 0 or size > self.limit_bytes:
            return
        buf = (ctypes.c_uint8 * size)()
        written = self._llama.llama_state_seq_get_data(self._ctx.ctx, buf, size, slot)
        if written <= 0:
            return
        while self._entries and self.bytes + written > self.limit_bytes:
            self._drop(next(iter(self._entries)))
        self._ids += 1
        self._entries[self._ids] = _Entry(list(tokens), adapter, bytes(buf)[:written])
        self.bytes += written
        self.saved += 1

    def best(self, prompt: list[int], adapter: str | None) -> tuple[int, int]:
        """(entry key, tokens shared with `prompt`) of the entry sharing the most; (0, 0) when
        none shares a useful prefix."""
        best_key, best_n = 0, 0
        for key, entry in self._entries.items():
            if entry.adapter != adapter:
                continue
            n = shared_prefix(entry.tokens, prompt)
            if n > best_n:
                best_key, best_n = key, n
        return (best_key, best_n) if best_n >= MIN_CACHED_TOKENS else (0, 0)

    def load(self, key: int, slot: int) -> list[int] | None:
        """Copy entry `key` into `slot` (whose cache must be empty); the tokens it now holds,
        or None if llama.cpp refused (the pool has no room: the caller recomputes)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        buf = (ctypes.c_uint8 * len(entry.state)).from_buffer_copy(entry.state)
        if self._llama.llama_state_seq_set_data(self._ctx.ctx, buf, len(entry.state), slot) == 0:
            self._llama.llama_memory_seq_rm(self._ctx.memory, slot, -1, -1)
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return list(entry.tokens)

    def forget(self, adapter: str) -> None:
        """Drop the states computed under `adapter` (it was unloaded)."""
        for key in [k for k, e in self._entries.items() if e.adapter == adapter]:
            self._drop(key)

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key)
        self.bytes -= len(entry.state)
