"""Grammar-constrained decoding for the transformers engine, with xgrammar.

The grammars are the same GBNF llama.cpp reads (tool calls, JSON schemas, agents' formats),
so both engines accept exactly the same outputs. xgrammar compiles a grammar against the
vocabulary once and then gives a token bitmask per step; masked logits make the sampler
pick only tokens that keep the output inside the grammar. A lazy grammar (tool_choice auto)
starts once its trigger text appears, fed the text from the trigger on, as llama.cpp's
lazy grammars do.
"""

from __future__ import annotations

import threading
from typing import Any


class GrammarCompiler:
    """Compiles GBNF for one tokenizer and vocabulary size (the model's logits width)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: set[int]) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=sorted(stop_ids)
        )
        self.vocab_size = vocab_size
        self._compiler = xgr.GrammarCompiler(info, max_threads=1)
        self._lock = threading.Lock()

    def compile(self, grammar: str) -> Any:
        """Raises ValueError (naming the problem) when the grammar does not parse."""
        with self._lock:
            try:
                return self._compiler.compile_grammar(grammar)
            except RuntimeError as e:
                raise ValueError(f"grammar: {str(e).strip().splitlines()[0]}") from None

    def constraint(self, compiled: Any, trigger: str | None) -> GrammarConstraint:
        return GrammarConstraint(self._xgr, compiled, self.vocab_size, trigger)


class GrammarConstraint:
    """The state of one generation under a grammar."""

    def __init__(self, xgr: Any, compiled: Any, vocab_size: int, trigger: str | None) -> None:
        self._xgr, self._compiled, self._trigger = xgr, compiled, trigger
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self._matcher: Any = None if trigger else xgr.GrammarMatcher(compiled)
        self._text = ""
        self.broken = False  # the text after a trigger already left the grammar

    def mask(self, scores: Any) -> None:
        """Forbid, in place, every token the grammar does not allow next."""
        if self._matcher is None or self.broken:
            return
        self._matcher.fill_next_token_bitmask(self._bitmask)
        row = scores[None] if scores.dim() == 1 else scores
        self._xgr.apply_token_bitmask_inplace(row, self._bitmask.to(row.device))

    def accept(self, token: int, text: str) -> None:
        """Advance past `token`, whose decoded text is `text`."""
        if self.broken:
            return
        if self._matcher is not None:
            if not self._matcher.accept_token(token):
                self.broken = True
            return
        self._text += text
        at = self._text.find(self._trigger) if self._trigger else -1
        if at >= 0:
            self._matcher = self._xgr.GrammarMatcher(self._compiled)
            if not self._matcher.accept_string(self._text[at:]):
                self.broken = True

    @property
    def finished(self) -> bool:
        """The grammar is complete and allows nothing more."""
        return self._matcher is not None and self._matcher.is_terminated()
