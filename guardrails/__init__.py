"""lmfast.guardrails: input and output guards (PII, prompt injection) for the generation pipeline.

Installed under `lmfast.` (not as a bare `guardrails` package) so it never shadows guardrails-ai.
"""
