"""Synthesis: generate completions (vLLM, transformers or an OpenAI-compatible server), score them
(verifiers, a reward model, an LLM judge), keep the best, build preference pairs, filter RLVR prompts."""
