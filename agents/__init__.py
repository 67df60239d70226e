"""lmfast.agents: ReAct / chain-of-thought agents with tool calling over LMFast generation.

Installed under `lmfast.` (not as a bare `agents` package) so it never shadows openai-agents.
"""
