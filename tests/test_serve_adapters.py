"""`mathtune serve BASE --adapter NAME=DIR ...` on a tiny in-process model and two tiny LoRA
adapters with different random weights: each model name gives the text in-process generation
gives for that model (concurrently too), unchanged tensors are shared with the base, requests of
different models take turns fairly, and an adapter of another base is refused at startup.

Run: .venv/bin/python -m pytest tests/test_serve_adapters.py -q
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from test_serve import PROMPTS, LiveServer  # noqa: E402

from mathtune.errors import MathtuneError  # noqa: E402
from mathtune.generation import HFGenerator, SamplingParams  # noqa: E402
from mathtune.serve.adapters import check_adapters, load_adapters, parse_adapters  # noqa: E402
from mathtune.serve.app import create_app  # noqa: E402
from mathtune.serve.batcher import Batcher, Job  # noqa: E402

GREEDY = SamplingParams(max_new_tokens=16)


def make_adapter(base_dir: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter of `base_dir` (q, v and down projections) with random, non-zero lora_B
    (PEFT initialises B to zeros, which would leave the model unchanged)."""
    from peft import LoraConfig, get_peft_model

    from mathtune.models import load_model

    model, _ = load_model(base_dir, dtype="fp32", device="cpu")
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3, generator=gen)
    peft.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapter_dirs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {name: make_adapter(tiny_model_dir, root / name, seed) for name, seed in (("alpha", 1), ("beta", 2))}


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return HFGenerator(str(tiny_model_dir), batch_size=16, dtype="fp32", threads=1)


@pytest.fixture(scope="module")
def adapters(base, adapter_dirs):
    return load_adapters(base, adapter_dirs)


@pytest.fixture(scope="module")
def ref_gens(tiny_model_dir, adapter_dirs) -> dict[str, HFGenerator]:
    """Per served name, its own fresh in-process load: `load_model(adapter_dir)` (base + adapter,
    merged) for the adapters."""
    return {name: HFGenerator(str(path), batch_size=16, dtype="fp32", threads=1)
            for name, path in {"tiny": tiny_model_dir, **adapter_dirs}.items()}


@pytest.fixture(scope="module")
def references(ref_gens) -> dict[str, list[str]]:
    """Greedy texts of PROMPTS per served name, generated in-process."""
    refs = {name: [c[0].text for c in gen.generate(PROMPTS, GREEDY)] for name, gen in ref_gens.items()}
    assert len({tuple(t) for t in refs.values()}) == 3, refs  # the three models really differ
    return refs


@pytest.fixture(scope="module")
def client(base, adapters):
    with TestClient(create_app(base, model_name="tiny", adapters=adapters)) as c:
        yield c


def complete(post, model: str, prompt, max_tokens: int = 16) -> list[str]:
    r = post("/v1/completions", {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
    return [c["text"] for c in r["choices"]]


def test_models_lists_the_base_and_every_adapter_and_unknown_names_are_404(client):
    data = client.get("/v1/models").json()["data"]
    assert [m["id"] for m in data] == ["tiny", "alpha", "beta"]
    assert [m.get("parent") for m in data] == [None, "tiny", "tiny"]
    r = client.post("/v1/completions", json={"model": "gamma", "prompt": "x"})
    err = r.json()["error"]
    assert r.status_code == 404 and err["code"] == "model_not_found" and err["param"] == "model"
    assert set(err) == {"message", "type", "param", "code"}
    assert "'gamma'" in err["message"] and "'alpha'" in err["message"] and "'beta'" in err["message"]
    health = client.get("/health").json()
    assert health["model"] == "tiny" and health["adapters"] == ["alpha", "beta"]


def test_each_model_name_gives_that_models_greedy_text(client, references, ref_gens):
    def post(path, body):
        return client.post(path, json=body).json()

    for name, ref in references.items():
        assert complete(post, name, PROMPTS) == ref, name
    # chat goes through the chosen model too
    msgs = [{"role": "user", "content": PROMPTS[0]}]
    prompt = ref_gens["beta"].tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    chats = {name: client.post("/v1/chat/completions", json={"model": name, "messages": msgs, "max_tokens": 16,
                                                              "temperature": 0}).json()["choices"][0]["message"]
             for name in ("alpha", "beta")}
    assert chats["beta"]["content"] == ref_gens["beta"].generate([prompt], GREEDY)[0][0].text
    assert chats["alpha"]["content"] == ref_gens["alpha"].generate([prompt], GREEDY)[0][0].text


def test_concurrent_requests_to_base_and_both_adapters_in_one_server(base, adapters, references):
    jobs = [(name, i) for i in range(len(PROMPTS)) for name in ("alpha", "beta", "tiny")]
    with LiveServer(create_app(base, model_name="tiny", adapters=adapters, window_s=0.05)) as srv:
        with ThreadPoolExecutor(len(jobs)) as pool:
            texts = list(pool.map(lambda job: complete(srv.post, job[0], PROMPTS[job[1]])[0], jobs))
        health = srv.health()
    assert texts == [references[name][i] for name, i in jobs]
    assert health["requests_served"] == len(jobs)
    assert health["loops"] < len(jobs), health  # requests of one model still shared loops


def test_adapters_share_every_unchanged_tensor_with_the_base(base, adapters, tiny_model_dir):
    from mathtune.models import load_model

    fresh, _ = load_model(tiny_model_dir, dtype="fp32", device="cpu")
    base_params = dict(base.model.named_parameters())
    for gen in adapters.values():
        params = dict(gen.model.named_parameters())
        assert set(params) == set(base_params)  # merged: a plain model, no LoRA modules left
        for name, p in params.items():
            targeted = any(t in name for t in ("q_proj", "v_proj", "down_proj"))
            assert (p is base_params[name]) != targeted, name  # changed tensors are its own, the rest shared
        assert gen.model.lm_head.weight is base.model.model.embed_tokens.weight  # ties survive
    for name, p in fresh.named_parameters():  # merging into the copies left the base untouched
        assert torch.equal(p, base_params[name]), name


def test_requests_for_another_model_take_turns_fairly(base):
    """A1 decodes; B1, then A2 arrive. A2 must not join A1's loop while B1 waits: B1 is served
    next, then A2, each in a loop of its own."""
    batcher = Batcher({"a": base, "b": base}, window_s=0.0, max_tokens_cap=64)
    done: list[str] = []
    blocked, go = threading.Event(), threading.Event()
    finished = threading.Semaphore(0)

    def recorder(label, stall=False):
        def emit(event):
            if stall and event[0] == "delta" and not go.is_set():
                blocked.set()
                go.wait(10)
            if event[0] == "done":
                done.append(label)
                finished.release()
        return emit

    ids = base.encode(PROMPTS[2])
    batcher.start()
    try:
        batcher.submit(Job(ids=ids, model="a", max_tokens=30, stream=True, emit=recorder("A1", stall=True)))
        assert blocked.wait(20)  # A1 is in its loop
        batcher.submit(Job(ids=ids, model="b", max_tokens=4, emit=recorder("B1")))
        batcher.submit(Job(ids=ids, model="a", max_tokens=4, emit=recorder("A2")))
        go.set()
        for _ in range(3):
            assert finished.acquire(timeout=30)
    finally:
        batcher.close()
    assert done == ["A1", "B1", "A2"]
    assert batcher.loops_by_model == {"a": 2, "b": 1}


def test_adapter_flags_and_an_adapter_of_another_base_are_clear_errors(tiny_model_dir, tiny_qwen2_dir, adapter_dirs,
                                                                      tmp_path, capsys):
    from mathtune.cli import main

    other = make_adapter(tiny_qwen2_dir, tmp_path / "qwen-adapter", 3)
    with pytest.raises(MathtuneError) as e:
        check_adapters({"q": other}, str(tiny_model_dir))
    assert "was trained on" in e.value.message and str(tiny_qwen2_dir) in e.value.message
    check_adapters(adapter_dirs, str(tiny_model_dir))  # the right base passes
    # the command refuses at startup, before loading anything, with one clear line
    assert main(["serve", str(tiny_model_dir), "--adapter", f"q={other}"]) == 2
    assert "was trained on" in capsys.readouterr().err
    assert main(["serve", str(tiny_model_dir), "--adapter", f"x={tiny_model_dir}"]) == 2
    assert "not a PEFT adapter directory" in capsys.readouterr().err
    for specs, words in ((["alpha"], "not NAME=DIR"), (["a=x", "a=y"], "given twice"), (["tiny=x"], "base model's name")):
        with pytest.raises(MathtuneError, match=words):
            parse_adapters(specs, base_name="tiny")


def test_serve_command_wires_adapters_into_the_app(tiny_model_dir, adapter_dirs, references, monkeypatch):
    import uvicorn

    from mathtune.cli import main

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    argv = ["serve", str(tiny_model_dir), "--name", "tiny", "--dtype", "fp32", "--batch-size", "8",
            *[f"--adapter={n}={d}" for n, d in adapter_dirs.items()]]
    assert main(argv) == 0
    with TestClient(apps[0]) as c:
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["tiny", "alpha", "beta"]
        assert complete(lambda p, b: c.post(p, json=b).json(), "alpha", PROMPTS) == references["alpha"]
