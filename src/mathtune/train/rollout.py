"""Fast GRPO rollouts: TRL's public `rollout_func` extension point, driven by mathtune's decode loop.

TRL's default rollout on a CPU is `model.generate` over the whole generation batch: it runs every
row to the longest one and concatenates the KV cache at every step. `DecodeRollout` samples the
same completions with `HFGenerator`'s decode loop (continuous batching, in-place KV cache, rows
leave as they finish, shared prefill for the group of one prompt) and returns what TRL needs:
prompt ids (tokenized exactly as TRL tokenizes text prompts), completion ids (the stopping EOS
included, as TRL's own path keeps it) and each token's log-probability under the tempered
distribution (`logits / temperature`, which is what TRL recomputes).

It always sees the current policy:

- `policy: merged` (default for LoRA): a plain copy of the base model is made once, and before
  every rollout each LoRA layer's weight is refreshed to `W + scale * B @ A` (PEFT's own
  `get_delta_weight`). The copy is a plain model, so generation runs on fused, pre-packed weights
  (`generation/fused.py`) instead of the LoRA forward (two extra skinny GEMMs per projection);
  it costs one more copy of the base weights. In bf16 the merged weight is rounded to bf16 once
  per step, as a vLLM weight sync does, so updates below half a bf16 step of W do not reach the
  sampling policy until they add up (`policy: live` samples the exact training policy).
- `policy: live`: generation runs on the training model itself (LoRA forward, no copy). Used for
  full fine-tuning (the model is already plain), DoRA (its magnitude vector is not a delta) and
  models where a copy would not fit.

Sampling is seeded by (recipe seed, global step, prompt position), so a resumed run draws the
same completions as the uninterrupted one. During the rollout the model is in eval mode (no
dropout in the sampling policy) and the training mode comes back afterwards.

Sampling options the decode loop does not implement (`top_k`, `min_p`, `repetition_penalty`,
`generation_kwargs`) are refused by `check_rollout_settings` with the fix (`grpo.rollout: trl`).
`benchmarks/grpo_throughput.py` times a whole GRPO step against TRL's default rollout.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

from ..errors import MathtuneError

UNSUPPORTED = {"top_k": (0, None), "min_p": (None, 0.0), "repetition_penalty": (1.0, None),
               "generation_kwargs": (None, {})}


def check_rollout_settings(settings: dict[str, Any]) -> None:
    """Refuse GRPOConfig sampling settings the decode loop would silently ignore."""
    for key, neutral in UNSUPPORTED.items():
        if key in settings and settings[key] not in neutral:
            raise MathtuneError(f"trainer.{key}={settings[key]!r} is not supported by mathtune's rollout",
                                f"drop trainer.{key}, or set grpo.rollout: trl (TRL's model.generate, slower)")


def _lora_layers(model: Any) -> list[tuple[str, Any]]:
    from peft.tuners.lora import LoraLayer

    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]


class DecodeRollout:
    """`rollout_func(prompts, trainer) -> {"prompt_ids", "completion_ids", "logprobs"}` for TRL's
    GRPOTrainer. `prompts` is TRL's per-process slice, each prompt repeated `num_generations`
    times in a row (its RepeatSampler); one completion is returned per entry, in order."""

    def __init__(self, tokenizer: Any, *, max_new_tokens: int, temperature: float, top_p: float = 1.0,
                 seed: int = 0, policy: str = "merged", batch_size: int = 64) -> None:
        if temperature <= 0:
            raise MathtuneError(f"GRPO samples groups of completions; trainer.temperature={temperature} is greedy",
                                "set trainer.temperature to 1.0 (TRL's default) or 0.7")
        self.tokenizer = tokenizer
        self.max_new_tokens, self.temperature, self.top_p = int(max_new_tokens), float(temperature), float(top_p)
        self.seed, self.policy, self.batch_size = int(seed), policy, int(batch_size)
        self._shadow: Any = None
        self._live = False  # decided at the first rollout: generate with the training model itself
        self._pairs: list[tuple[Any, Any]] = []  # (LoRA layer of the policy, plain linear of the shadow)
        self._gen: Any = None
        self._gen_model: Any = None
        self.seconds = 0.0  # spent sampling since grpo.RolloutTimeCallback last logged it
        self.__name__ = "mathtune_decode_rollout"

    # ------------------------------------------------------------------ policy

    def _policy_model(self, model: Any) -> Any:
        """The plain model to generate with, holding the trainer's current weights."""
        from peft import PeftModel

        if not isinstance(model, PeftModel):
            return model
        if self._shadow is None and not self._live:
            layers = _lora_layers(model)
            dora = any(getattr(m, "use_dora", {}).get(a, False) for _, m in layers for a in m.active_adapters)
            # trained weights outside the LoRA matrices (modules_to_save, embeddings) would go stale in a copy
            other = any(p.requires_grad and "lora_" not in n for n, p in model.named_parameters())
            self._live = self.policy == "live" or dora or other or not layers
            if not self._live:
                self._shadow = self._make_shadow(model, layers)
        if self._live:
            return model.get_base_model()
        import torch

        with torch.no_grad():
            for layer, plain in self._pairs:
                merged = layer.get_base_layer().weight.float()
                for adapter in layer.active_adapters:
                    if adapter in layer.lora_A:
                        merged = merged + layer.get_delta_weight(adapter).float()
                plain.weight.copy_(merged.to(plain.weight.dtype))
        return self._shadow

    def _make_shadow(self, model: Any, layers: list[tuple[str, Any]]) -> Any:
        """A plain copy of the base model, without the adapters (their weights are merged in per rollout)."""
        base = model.get_base_model()
        shadow = copy.deepcopy(base)
        for module in shadow.modules():
            # a copy keeps instance-level wrappers the trainer put on the original (accelerate's
            # mixed-precision `forward`, hooks for input grads): the shadow runs the class forwards
            module.__dict__.pop("forward", None)
            module._forward_hooks.clear()
            module._forward_pre_hooks.clear()
        for p in shadow.parameters():
            p.requires_grad_(False)
        prefix = "base_model.model."
        for name, layer in layers:
            inner = name[len(prefix):] if name.startswith(prefix) else name
            parent_name, _, child = inner.rpartition(".")
            parent = shadow.get_submodule(parent_name) if parent_name else shadow
            plain = copy.deepcopy(layer.get_base_layer())  # deepcopy of base kept the LoRA wrapper: unwrap it
            plain.weight.requires_grad_(False)
            setattr(parent, child, plain)
            self._pairs.append((layer, plain))
        shadow.eval()
        return shadow

    def _generator(self, model: Any) -> Any:
        import torch

        from ..generation.hf import HFGenerator

        if self._gen is None or self._gen_model is not model:
            self._gen = HFGenerator(model, self.tokenizer, batch_size=self.batch_size,
                                    threads=torch.get_num_threads())
            self._gen_model = model
        return self._gen

    # ------------------------------------------------------------------ rollout

    def sample(self, model: Any, prompt_ids: Sequence[Sequence[int]], n: int, seeds: Sequence[int],
               max_new_tokens: int | None = None) -> list[list[Any]]:
        """`n` completions (with token ids and log-probs) per tokenized prompt from the current
        policy of `model` (the trainer's model: PEFT-wrapped or plain), in eval mode."""
        from ..generation.base import SamplingParams

        was_training = model.training
        model.eval()
        try:
            params = SamplingParams(max_new_tokens=max_new_tokens or self.max_new_tokens,
                                    temperature=self.temperature, top_p=self.top_p, n=n, seed=self.seed,
                                    logprobs=True)
            return self._generator(self._policy_model(model)).generate_tokens(prompt_ids, params, seeds=seeds)
        finally:
            model.train(was_training)

    def __call__(self, prompts: Sequence[Any], trainer: Any) -> dict[str, list]:
        from ..generation.base import stable_seed

        if prompts and not isinstance(prompts[0], str):
            raise MathtuneError("mathtune's rollout takes text prompts (mathtune renders them with the prompt style)",
                                "set grpo.rollout: trl for conversational datasets")
        prompt_ids = [list(ids) for ids in self.tokenizer(text=list(prompts))["input_ids"]]
        # TRL repeats each prompt num_generations times in a row: one prefill per group
        groups: list[tuple[int, int]] = []  # (first index, count)
        for i, text in enumerate(prompts):
            if groups and prompts[groups[-1][0]] == text and groups[-1][0] + groups[-1][1] == i:
                groups[-1] = (groups[-1][0], groups[-1][1] + 1)
            else:
                groups.append((i, 1))
        counts = {c for _, c in groups}
        n = counts.pop() if len(counts) == 1 else 1
        starts = [g for g, _ in groups] if n > 1 else list(range(len(prompts)))
        step = int(trainer.state.global_step)
        seeds = [stable_seed(f"grpo:{step}:{i}") for i in starts]
        model = trainer.accelerator.unwrap_model(trainer.model)
        t0 = time.perf_counter()
        out = self.sample(model, [prompt_ids[i] for i in starts], n, seeds)
        self.seconds += time.perf_counter() - t0  # read (and reset) by grpo.RolloutTimeCallback
        completions = [c for per in out for c in per]
        return {"prompt_ids": prompt_ids,
                "completion_ids": [list(c.token_ids or ()) for c in completions],
                "logprobs": [list(c.logprobs or ()) for c in completions]}
