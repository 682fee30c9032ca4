"""Tiny, real, deterministic models for unit tests: built in-process in about a second, no download.

The tokenizer is a real byte-level BPE (HF `tokenizers`) trained here on a small math corpus,
with ChatML special tokens and chat template (as SmolLM2 and Qwen2 use), so chat templating,
padding, masking and generation run through the same transformers/PEFT/TRL code as real models.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "How many clips did Natalia sell altogether in April and May? #### 72",
    "Let's think step by step. 48 / 2 = 24. 48 + 24 = 72. The answer is 72.",
    "Solve for x: 2x + 3 = 11. Subtract 3 from both sides: 2x = 8, so x = 4.",
    "The final answer is \\boxed{4}. Compute \\frac{1}{2} + \\frac{1}{3} = \\frac{5}{6}.",
    "What is 12*7? 12 * 7 = 84. Therefore the answer is 84.",
    "Find the derivative of x^3 + 2x: 3x^2 + 2. The area of a circle is \\pi r^2.",
    "The probability of rolling a sum of 7 with two dice is 6/36 = 1/6.",
    "gcd(12, 18) = 6 and lcm(12, 18) = 36. 17 mod 5 = 2. The mean of 2, 4, 9 is 5.",
    "user assistant system Please reason step by step, and put your final answer within \\boxed{}.",
] * 4


def make_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.padding_side = "left"
    return fast


def make_tiny_model(tokenizer, arch: str = "llama", seed: int = 0):
    """A 2-layer causal LM of the given architecture ('llama' or 'qwen2'), float32, seeded."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    torch.manual_seed(seed)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    cfg = LlamaConfig(**common) if arch == "llama" else Qwen2Config(**common)
    model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def save_tiny_model(directory: str | Path, arch: str = "llama") -> Path:
    """Write an ordinary HF model directory (safetensors + tokenizer + chat template)."""
    directory = Path(directory)
    tok = make_tiny_tokenizer()
    model = make_tiny_model(tok, arch)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def lm_step(model, ids, autocast: bool = False):
    """One language-modelling forward and backward on `ids` (labels = ids): (detached loss,
    {name: gradient} of the parameters that got one); gradients are cleared afterwards."""
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return loss.detach(), grads
