"""Generator faults through the whole serving path (``/v1/chat`` of ``nebras serve``'s app, a real
Rasa agent, the GPT-2 NLG with ``rephrase_all``): an exception, an out-of-memory error, a timeout and
a missing model each give the templated reply, count a fallback by reason, make ``/readyz`` say
``degraded``, and the service recovers when the model works (or appears) again."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from reliability.conftest import TEMPLATE_GREET

pytestmark = pytest.mark.timeout(240)

FAILURE_THRESHOLD = 2


def fallbacks(reason: str) -> float:
    return REGISTRY.get_sample_value("nebras_fallbacks_total", {"reason": reason}) or 0.0


@pytest.fixture(scope="module")
def served(serving_bot_model: Path, tmp_path_factory):
    """The app with an agent whose NLG follows ``<tmp>/nlg/current`` (dangling at first: no model)."""
    from fastapi.testclient import TestClient
    from rasa.core.agent import Agent

    from nebras_bot.generation.hotswap import ReloadingGenerator
    from nebras_bot.generation.settings import GenerationSettings
    from nebras_bot.nlg import GPT2NaturalLanguageGenerator
    from nebras_bot.serving.app import create_app
    from nebras_bot.serving.settings import ServingSettings

    root = tmp_path_factory.mktemp("nlg")
    (root / "current").symlink_to("v1")  # dangling: the model is missing
    settings = GenerationSettings(model=str(root / "current"), rephrase_all=True, timeout_s=1.0,
                                  max_new_tokens=8, torch_threads=1)
    generator = ReloadingGenerator.load(settings, check_interval_s=3600, failure_threshold=FAILURE_THRESHOLD)
    nlg = GPT2NaturalLanguageGenerator(None, generator=generator, rephrase_all=True, timeout=1.0)
    agent = Agent.load(str(serving_bot_model), generator=nlg)
    app = create_app(ServingSettings(endpoints=None, rate_limit_per_minute=0, web_chat=False), agent=agent)
    with TestClient(app) as client:
        yield client, generator, root


def chat(client, text: str = "hello", sender: str = "fault-user") -> dict:
    response = client.post("/v1/chat", json={"sender_id": sender, "message": text})
    assert response.status_code == 200, response.text
    return response.json()


def readiness(client) -> dict:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    return response.json()


def test_missing_model_then_model_appears(served, tiny_model_dir) -> None:
    client, generator, root = served
    assert not generator.available
    before = fallbacks("no_model")
    body = chat(client)
    assert [m["text"] for m in body["messages"]] == [TEMPLATE_GREET]
    assert body["generated"] is False
    assert fallbacks("no_model") == before + 1
    ready = readiness(client)
    assert ready["status"] == "degraded" and ready["generator"] == "degraded"

    tiny_model_dir(root / "v1", "tiny-v1")  # the model is back (the link now resolves)
    assert generator.check_for_new_model(force=True, wait=True)
    assert generator.available and generator.model_version == "tiny-v1"
    assert readiness(client)["generator"] == "ok"
    body = chat(client)
    assert body["messages"] and body["messages"][0]["text"].strip()
    assert fallbacks("no_model") == before + 1  # the model is used again


class _Fault:
    def __init__(self, error: BaseException = None, sleep_s: float = 0.0) -> None:
        self.error, self.sleep_s, self.calls = error, sleep_s, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)
            from nebras_bot.generation.decoding import Completion

            return Completion(text="", raw="", new_tokens=0, prompt_tokens=0, seconds=self.sleep_s, stopped_by="time")
        raise self.error


@pytest.mark.parametrize("fault, reason", [
    (_Fault(ValueError("model exploded")), "error"),
    (_Fault(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")), "error"),
    (_Fault(sleep_s=1.6), "timeout"),
], ids=["exception", "out_of_memory", "timeout"])
def test_runtime_fault_templated_degraded_then_recovers(served, tiny_model_dir, monkeypatch, fault, reason) -> None:
    client, generator, root = served
    if not generator.available:  # the module's first test loads it; make the order not matter
        if not (root / "v1").exists():
            tiny_model_dir(root / "v1", "tiny-v1")
        generator.check_for_new_model(force=True, wait=True)
    assert readiness(client)["generator"] == "ok"
    monkeypatch.setattr(generator.active.decoder, "complete", fault)
    before = fallbacks(reason)
    for turn in range(FAILURE_THRESHOLD):
        body = chat(client, sender=f"fault-{reason}-{id(fault)}")
        assert [m["text"] for m in body["messages"]] == [TEMPLATE_GREET], body
        assert body["generated"] is False
    assert fault.calls >= FAILURE_THRESHOLD
    assert fallbacks(reason) >= before + FAILURE_THRESHOLD
    ready = readiness(client)
    assert ready["status"] == "degraded" and ready["generator"] == "degraded", ready

    monkeypatch.undo()  # the model works again
    if reason == "timeout":
        time.sleep(fault.sleep_s)  # let the worker thread finish the slow call
    body = chat(client, sender=f"fault-{reason}-recovered-{id(fault)}")
    assert body["messages"] and body["messages"][0]["text"].strip()
    ready = readiness(client)
    assert ready["status"] == "ready" and ready["generator"] == "ok", ready


def test_broken_new_model_keeps_the_working_one(served, tiny_model_dir) -> None:
    """A promotion to a directory that cannot be loaded does not replace the model in use."""
    client, generator, root = served
    if not generator.available:
        if not (root / "v1").exists():
            tiny_model_dir(root / "v1", "tiny-v1")
        generator.check_for_new_model(force=True, wait=True)
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    tmp_link = root / ".current.tmp"
    tmp_link.symlink_to("broken")
    os.replace(tmp_link, root / "current")
    try:
        generator.check_for_new_model(force=True, wait=True)
        assert generator.available and generator.model_version == "tiny-v1"
        assert generator.reload_error
        assert chat(client)["messages"][0]["text"].strip()
        assert readiness(client)["generator"] == "ok"
    finally:
        tmp_link.symlink_to("v1")
        os.replace(tmp_link, root / "current")
