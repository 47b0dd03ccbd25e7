"""Resident memory of the NLG server with the model loaded, and its growth over 10,000 turns.

``python -m benchmarks.bench_memory [--model DIR] [--turns 10000]``

One ``nebras nlg-server`` process (int8 fast path, micro-batching) with the shipped model.
``--concurrency`` clients play conversations of ``--turns-per-conversation`` turns (the tracker
grows turn by turn, as Rasa sends it) until ``--turns`` replies; every ``--generate-every``-th turn
asks for ``utter_generative`` (a generated reply, ``--max-new-tokens`` tokens at most), the others
are templated responses. The server's RSS (psutil) is sampled before the first turn and every
``--sample-every`` turns. RSS jumps for a moment while a generated batch runs (activations, KV
cache) and falls back afterwards, so a single sample says little; growth is measured between
floors: the lowest sample of the first and of the last quarter of the turns after the warm-up.
``ratio`` = floor after warm-up / floor at the end (1.0 = no growth; target 0.95, i.e. < 5%).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any, Dict, List

import httpx

from benchmarks import common, servers

NAME = "bench_memory"
TARGET = 0.95
TEMPLATED = ("utter_greet", "utter_thank_you", "utter_get_refund", "utter_delivery_period", "utter_goodbye")
GENERATED = "utter_generative"


async def _client(url: str, state: Dict[str, Any], args, client: httpx.AsyncClient, index: int) -> None:
    conversation = 0
    while state["turns"] < args.turns:
        history: List[Dict[str, Any]] = []
        conversation += 1
        for turn in range(args.turns_per_conversation):
            number = state["turns"]
            if number >= args.turns:
                return
            state["turns"] += 1
            response = GENERATED if number % args.generate_every == 0 else TEMPLATED[number % len(TEMPLATED)]
            text = f"message {turn} about order {10000 + index}"
            stamp = time.time()
            events = history + [
                {"event": "action", "name": "action_listen", "timestamp": stamp},
                {"event": "user", "text": text, "timestamp": stamp,
                 "parse_data": {"text": text, "intent": {"name": "out_of_scope", "confidence": 0.5}, "entities": []}},
            ]
            body = {"response": response, "arguments": {}, "channel": {"name": "rest"},
                    "tracker": {"sender_id": f"mem-{index}-{conversation}", "events": events}}
            try:
                reply = await client.post(url + "/nlg", json=body)
                ok = reply.status_code == 200 and (reply.json().get("text") or "").strip()
            except httpx.HTTPError:
                ok = False
            if not ok:
                state["errors"] += 1
                continue
            state["generated"] += bool(reply.json().get("generated"))
            history = events + [{"event": "bot", "text": reply.json()["text"], "timestamp": time.time()}]


async def _sampler(process, state: Dict[str, Any], args) -> None:
    next_mark = 0
    while state["turns"] < args.turns or not state["done"]:
        if state["turns"] >= next_mark:
            state["samples"].append((state["turns"], process.memory_info().rss))
            next_mark += args.sample_every
        if state["done"]:
            break
        await asyncio.sleep(0.05)


async def _play(url: str, process, args) -> Dict[str, Any]:
    state: Dict[str, Any] = {"turns": 0, "errors": 0, "generated": 0, "samples": [], "done": False}
    sampler = asyncio.create_task(_sampler(process, state, args))
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=args.concurrency + 2)) as client:
        await asyncio.gather(*[_client(url, state, args, client, i) for i in range(args.concurrency)])
    state["seconds"] = time.perf_counter() - started
    await asyncio.sleep(0.5)
    state["samples"].append((state["turns"], process.memory_info().rss))
    state["done"] = True
    await sampler
    return state


def floors(samples, warmup_turns: int, total_turns: int):
    """``(lowest RSS in the first quarter after warm-up, lowest RSS in the last quarter)``."""
    span = max(1, total_turns - warmup_turns)
    first = [r for t, r in samples if warmup_turns <= t <= warmup_turns + span / 4]
    last = [r for t, r in samples if t >= total_turns - span / 4]
    fallback = [r for t, r in samples if t >= warmup_turns] or [r for _, r in samples]
    return min(first or fallback), min(last or fallback)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--turns", type=int, default=10000)
    parser.add_argument("--turns-per-conversation", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--generate-every", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--warmup-turns", type=int, default=1000)
    args = parser.parse_args(argv)

    import psutil

    from nebras_bot import paths

    source, description = common.shipped_model_source(args.model)
    model = servers.materialise_model(source)
    env = {"NEBRAS_GEN_FAST_PATH": "int8", "NEBRAS_GEN_MAX_NEW_TOKENS": str(args.max_new_tokens),
           "NEBRAS_GEN_TIMEOUT_S": "60", "NEBRAS_GEN_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1",
           "NEBRAS_NLG_BATCH_MAX_SIZE": "16", "TF_CPP_MIN_LOG_LEVEL": "3"}
    server = servers.nlg_server("memory", model, paths.home() / "domain.yml", env)
    try:
        process = psutil.Process(server.pid)
        loaded_rss = process.memory_info().rss
        state = asyncio.run(_play(server.url, process, args))
    finally:
        server.stop()
    samples = state["samples"]
    after_warmup, final = floors(samples, args.warmup_turns, state["turns"])
    ratio = after_warmup / final
    mib = 1024 * 1024
    raw = {
        "rss_model_loaded_mib": loaded_rss / mib, "rss_after_warmup_mib": after_warmup / mib,
        "rss_final_mib": final / mib, "growth_mib": (final - after_warmup) / mib,
        "growth_percent": 100.0 * (final - after_warmup) / after_warmup,
        "rss_peak_mib": max(r for _, r in samples) / mib, "rss_last_sample_mib": samples[-1][1] / mib,
        "turns": state["turns"], "errors": state["errors"], "generated_replies": state["generated"],
        "seconds": state["seconds"], "samples": [(t, round(r / mib, 1)) for t, r in samples],
    }
    path = common.write_result(
        NAME, ratio, TARGET, raw, model=description, model_source=source,
        ratio_definition="RSS after warm-up / RSS after all turns (1.0 = no growth)",
    )
    common.print_table(
        f"NLG server memory over {state['turns']} turns ({state['generated']} generated), model: {description}",
        ["model loaded MiB", "after warm-up MiB", "final MiB", "growth MiB", "errors"],
        [[raw["rss_model_loaded_mib"], raw["rss_after_warmup_mib"], raw["rss_final_mib"], raw["growth_mib"],
          state["errors"]]],
    )
    print(common.verdict(NAME, ratio, TARGET))
    print(f"wrote {path}")
    return 0 if state["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
