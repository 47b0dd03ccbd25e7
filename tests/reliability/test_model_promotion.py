"""Model promotion and rollback while replies are being generated: every reply comes from the old or
the new model, whole (never a half-loaded one), and rollback brings the old model back."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from nebras_bot.generation.generator import ResponseGenerator
from nebras_bot.generation.hotswap import ReloadingGenerator
from nebras_bot.generation.prompt import PromptContext, PromptTurn
from nebras_bot.generation.settings import GenerationSettings
from nebras_bot.training import registry

pytestmark = pytest.mark.timeout(120)

CONTEXT = PromptContext(history=[PromptTurn("user", "where is my parcel")], intent="track_order", slots={},
                        entities={}, template="Your order is on its way.")


def settings_for(root) -> GenerationSettings:
    return GenerationSettings(model=str(root / "current"), max_new_tokens=4, timeout_s=10.0, torch_threads=1)


class SlowLoader:
    """Loads like serving does, but holds the load open half-way so traffic runs during it."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.loading = threading.Event()
        self.loaded_versions = []

    def __call__(self, settings, source):
        self.loading.set()
        generator = ResponseGenerator.load(settings, source)
        time.sleep(self.hold_s)  # the new model exists but is not swapped in yet
        self.loaded_versions.append(generator.model_version)
        return generator


def test_promotion_during_traffic_then_rollback(tiny_registry) -> None:
    loader = SlowLoader(hold_s=1.0)
    settings = settings_for(tiny_registry)
    generator = ReloadingGenerator.load(settings, check_interval_s=0.0, loader=loader)
    assert generator.model_version == "v1"
    results, stop = [], threading.Event()

    async def traffic() -> None:
        while not stop.is_set():
            results.append(await generator.areply(CONTEXT, CONTEXT.template, {}))

    def run_traffic() -> None:
        async def many() -> None:
            await asyncio.gather(*(traffic() for _ in range(4)))
        asyncio.run(many())

    worker = threading.Thread(target=run_traffic)
    worker.start()
    try:
        time.sleep(0.3)
        registry.promote("v2", tiny_registry)
        assert loader.loading.wait(10), "the promotion was not noticed"
        during = len(results)
        deadline = time.monotonic() + 30
        while generator.model_version != "v2":
            assert time.monotonic() < deadline, "the new model was never swapped in"
            time.sleep(0.05)
        assert len(results) > during, "traffic stopped while the new model was loading"
        time.sleep(0.3)
        swapped_at = len(results)
        assert registry.rollback(tiny_registry) == "v1"
        deadline = time.monotonic() + 30
        while generator.model_version != "v1":
            assert time.monotonic() < deadline, "rollback was never picked up"
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join(30)

    versions = [r.model_version for r in results]
    assert set(versions) <= {"v1", "v2"}, set(versions)
    assert "v1" in versions[:during] and "v2" in versions[swapped_at:]
    assert versions[-1] == "v1"
    # no reply failed because of the swap: every fallback is a guard verdict on a real completion
    assert not [r.reason for r in results if r.reason and r.reason.split(":")[0] in ("error", "timeout", "no_model")]
    assert all(r.text.strip() for r in results)
    assert loader.loaded_versions == ["v2", "v1"]
    assert generator.swaps == 2 and generator.reload_error is None


def test_reply_holds_one_model_even_if_swapped_mid_reply(tiny_registry, monkeypatch) -> None:
    """A reply that started on the old model finishes on it, and reports its version."""
    generator = ReloadingGenerator.load(settings_for(tiny_registry), check_interval_s=3600)
    old = generator.active
    started, release = threading.Event(), threading.Event()
    real_complete = old.decoder.complete

    def slow_complete(*args, **kwargs):
        started.set()
        release.wait(10)
        return real_complete(*args, **kwargs)

    monkeypatch.setattr(old.decoder, "complete", slow_complete)
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", generator.reply(CONTEXT, CONTEXT.template, {})))
    thread.start()
    assert started.wait(10)
    registry.promote("v2", tiny_registry)
    assert generator.check_for_new_model(force=True, wait=True)
    assert generator.model_version == "v2"
    release.set()
    thread.join(20)
    assert box["r"].model_version == "v1" and box["r"].text.strip()
    assert generator.reply(CONTEXT, CONTEXT.template, {}).model_version == "v2"
