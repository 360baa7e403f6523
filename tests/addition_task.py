"""A small verifiable task for the RLVR tests: multi-digit addition with the answer as the reply's last number
(``thresher.tiny``: a character-level tokenizer and a tiny random Llama; SFT chats and RLVR rows)."""

from thresher.tiny import make_addition_model, write_addition_data

__all__ = ["make_addition_model", "write_addition_data"]
