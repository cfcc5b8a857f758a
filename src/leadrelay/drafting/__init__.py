"""Drafting: sandboxed templates and an optional LLM, every sentence resting on evidence."""
