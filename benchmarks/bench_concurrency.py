"""32 concurrent conversations over HTTP against the NLG server: micro-batched vs one-at-a-time.

``python -m benchmarks.bench_concurrency [--model DIR] [--conversations 32] [--turns 2]``

Two ``nebras nlg-server`` processes run side by side with the same model, the same fast path
(``--fast-path``, default ``auto`` as shipped: batches decode in bf16 where it is native, else in Nebras's fp32 loop)
and ``rephrase_all`` (every reply is generated, then checked by the guard): one decodes concurrent
requests in one continuous batch of up to ``NEBRAS_NLG_BATCH_MAX_SIZE`` rows (requests join
between decoding steps), the other one at a time (batch size 1). Each round plays
``--conversations`` conversations at once against one server,
``--turns`` turns each (the tracker grows turn by turn, as Rasa sends it); rounds alternate
between the servers (A B B A ...). Every reply must be HTTP 200 with a non-empty text.
``ratio`` = replies/s batched / replies/s one-at-a-time.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any, Dict, List

import httpx

from benchmarks import common, servers

NAME = "bench_concurrency"
TARGET = 2.5
RESPONSES = ("utter_change_order", "utter_get_refund", "utter_delivery_options", "utter_payment_issue",
             "utter_delivery_period", "utter_recover_password", "utter_complaint", "utter_check_invoice")
MESSAGES = ("I need to change order {n}", "I want my money back for order {n}", "what delivery options do you have?",
            "my card payment failed", "how long does delivery take?", "I forgot my password",
            "I am not happy with the service", "can I see invoice {n}?")


def _intent(response: str) -> str:
    return response[len("utter_"):]


def _events(history: List[Dict[str, Any]], text: str, intent: str) -> List[Dict[str, Any]]:
    stamp = time.time()
    return history + [
        {"event": "action", "name": "action_listen", "timestamp": stamp},
        {"event": "user", "text": text, "timestamp": stamp,
         "parse_data": {"text": text, "intent": {"name": intent, "confidence": 0.97}, "entities": []}},
    ]


async def _conversation(client: httpx.AsyncClient, url: str, index: int, turns: int, tally: Dict[str, Any]) -> None:
    history: List[Dict[str, Any]] = []
    for turn in range(turns):
        response = RESPONSES[(index + turn) % len(RESPONSES)]
        text = MESSAGES[(index + turn) % len(MESSAGES)].format(n=10000 + index)
        events = _events(history, text, _intent(response))
        body = {"response": response, "arguments": {}, "channel": {"name": "rest"},
                "tracker": {"sender_id": f"bench-{index}", "events": events}}
        started = time.perf_counter()
        try:
            reply = await client.post(url + "/nlg", json=body)
            latency = time.perf_counter() - started
            if reply.status_code != 200:
                tally["errors"] += 1
                continue
            message = reply.json()
        except httpx.HTTPError:
            tally["errors"] += 1
            continue
        tally["latencies"].append(latency)
        if not (message.get("text") or "").strip():
            tally["empty"] += 1
        tally["generated"] += bool(message.get("generated"))
        history = events + [{"event": "bot", "text": message.get("text"), "timestamp": time.time()}]


async def _round(url: str, conversations: int, turns: int, timeout: float) -> Dict[str, Any]:
    tally: Dict[str, Any] = {"errors": 0, "empty": 0, "generated": 0, "latencies": []}
    limits = httpx.Limits(max_connections=conversations + 4)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*[_conversation(client, url, i, turns, tally) for i in range(conversations)])
        tally["seconds"] = time.perf_counter() - started
    tally["replies"] = len(tally["latencies"])
    return tally


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--conversations", type=int, default=32)
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per server (alternating A B B A ...)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--wait-ms", type=float, default=10.0)
    parser.add_argument("--fast-path", default="auto")
    parser.add_argument("--max-new-tokens", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each server")
    parser.add_argument("--timeout", type=float, default=900.0, help="HTTP timeout per reply (s)")
    parser.add_argument("--name", default=NAME, help="result name (results/<name>.json), for supplementary runs")
    args = parser.parse_args(argv)

    from nebras_bot import paths

    source, description = common.shipped_model_source(args.model)
    model = servers.materialise_model(source)
    base_env = {
        "NEBRAS_GEN_FAST_PATH": args.fast_path, "NEBRAS_GEN_REPHRASE_ALL": "true",
        "NEBRAS_GEN_TIMEOUT_S": str(args.timeout), "NEBRAS_GEN_MAX_NEW_TOKENS": str(args.max_new_tokens),
        "NEBRAS_GEN_TORCH_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads),
        "NEBRAS_NLG_BATCH_WAIT_MS": str(args.wait_ms), "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    domain = paths.home() / "domain.yml"
    configs = {"batched": args.batch_size, "one_at_a_time": 1}
    results: Dict[str, List[Dict[str, Any]]] = {label: [] for label in configs}
    running = {}
    try:
        for label, size in configs.items():
            running[label] = servers.nlg_server(f"concurrency-{label}", model, domain,
                                                {**base_env, "NEBRAS_NLG_BATCH_MAX_SIZE": str(size)})
        order = []
        for index in range(args.rounds):
            order += ["batched", "one_at_a_time"] if index % 2 == 0 else ["one_at_a_time", "batched"]
        for label in order:
            tally = asyncio.run(_round(running[label].url, args.conversations, args.turns, args.timeout))
            print(f"  {label}: {tally['replies']} replies in {tally['seconds']:.1f} s, "
                  f"errors {tally['errors']}, empty {tally['empty']}", flush=True)
            results[label].append(tally)
    finally:
        for server in running.values():
            server.stop()

    figures = {}
    for label, rounds in results.items():
        latencies = [x for tally in rounds for x in tally["latencies"]]
        seconds = sum(t["seconds"] for t in rounds)
        replies = sum(t["replies"] for t in rounds)
        figures[label] = {
            "replies": replies, "seconds": seconds, "replies_per_s": replies / seconds if seconds else 0.0,
            "p50_s": common.percentile(latencies, 50), "p95_s": common.percentile(latencies, 95),
            "errors": sum(t["errors"] for t in rounds), "empty_replies": sum(t["empty"] for t in rounds),
            "generated_replies": sum(t["generated"] for t in rounds),
            "rounds_replies_per_s": [t["replies"] / t["seconds"] for t in rounds],
        }
    ratio = figures["batched"]["replies_per_s"] / figures["one_at_a_time"]["replies_per_s"]
    clean = all(f["errors"] == 0 and f["empty_replies"] == 0 for f in figures.values())
    path = common.write_result(
        args.name, ratio, TARGET, figures, model=description, model_source=source, conversations=args.conversations,
        turns=args.turns, rounds=args.rounds, batch_size=args.batch_size, wait_ms=args.wait_ms,
        fast_path=args.fast_path, max_new_tokens=args.max_new_tokens, zero_errors_and_empty=clean,
        ratio_definition="replies/s batched (continuous batching) / replies/s one-at-a-time (same server code, batch size 1)",
    )
    common.print_table(
        f"{args.conversations} concurrent conversations x {args.turns} turns x {args.rounds} rounds, NLG server over HTTP; model: {description}",
        ["server", "replies", "replies/s", "p50 s", "p95 s", "errors", "empty", "generated"],
        [[label, f["replies"], f["replies_per_s"], f["p50_s"], f["p95_s"], f["errors"], f["empty_replies"],
          f["generated_replies"]] for label, f in figures.items()],
    )
    print(common.verdict(args.name, ratio, TARGET) + ("" if clean else "  (ERRORS OR EMPTY REPLIES)"))
    print(f"wrote {path}")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
