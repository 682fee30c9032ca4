"""Prompt styles render the exact text the model sees, for chat and plain-completion models."""

from __future__ import annotations

import pytest

from mathtune.errors import MathtuneError
from mathtune.prompts import STYLES, get_style


def test_chat_boxed_uses_chat_template(tiny_tokenizer):
    text = get_style("chat-boxed").render("What is 12*7?", tiny_tokenizer)
    assert text.startswith("<|im_start|>user\nWhat is 12*7?\n")
    assert "\\boxed{}" in text and text.endswith("<|im_start|>assistant\n")


def test_fewshot_chat_and_plain(tiny_tokenizer):
    shots = [("What is 1+1?", "1+1=2. The answer is 2.")]
    chat = get_style("chat").render("What is 2+2?", tiny_tokenizer, fewshot=shots)
    assert chat.count("<|im_start|>user") == 2 and "<|im_start|>assistant\n1+1=2." in chat
    plain = get_style("gsm8k").render("What is 2+2?", fewshot=shots)
    assert plain == "Question: What is 1+1?\nAnswer: 1+1=2. The answer is 2.\n\nQuestion: What is 2+2?\nAnswer:"


def test_completion_appends_answer_in_style_format():
    assert get_style("chat-boxed").completion("2+2=4.", "4").endswith("\\boxed{4}.")
    assert get_style("gsm8k").completion("2+2=4.", "4").endswith("#### 4")
    assert get_style("chat-boxed").completion("So \\boxed{4}.", "4") == "So \\boxed{4}."


def test_chat_style_without_template_is_clear_error():
    with pytest.raises(MathtuneError, match="needs a tokenizer with a chat template"):
        get_style("chat-boxed").render("1+1", tokenizer=None)


def test_unknown_style_suggests():
    with pytest.raises(MathtuneError, match="did you mean 'chat-boxed'"):
        get_style("chat-boxd")
    assert {"chat-boxed", "chat", "cot", "gsm8k"} <= set(STYLES)
