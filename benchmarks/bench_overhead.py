"""Templated turns: Nebras's REST channel + NLG versus Rasa's stock REST channel + templated NLG.

``python -m benchmarks.bench_overhead [--rasa-model models/nebras.tar.gz] [--conversations 30]``

Two ``rasa run`` processes serve the same trained Rasa model with in-memory tracker stores:

- stock: ``rest:`` channel (``POST /webhooks/rest/webhook``), no ``nlg:`` endpoint (Rasa's
  ``TemplatedNaturalLanguageGenerator``);
- Nebras: ``NebrasChannel`` (``POST /webhooks/nebras/v1/chat``: auth check, size limits,
  validation, rate limiting, metrics, the ``/v1/chat`` contract) and
  ``nebras_bot.nlg.GPT2NaturalLanguageGenerator`` with a response model loaded; the turns are
  templated (greeting, thanks, bot challenge, goodbye have no ``rephrase: true``), so the
  generator decides not to generate and Rasa's templated reply goes out.

Turns are sent one at a time, alternating between the servers turn by turn. ``ratio`` = stock p50
latency / Nebras p50 latency; the target 0.9 means Nebras adds at most 10%.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List

import httpx

from benchmarks import common, servers

NAME = "bench_overhead"
TARGET = 0.9
TURNS = ("hello", "are you a bot?", "thank you", "bye")


def _rasa_server(name: str, model: Path, credentials: str, endpoints: str, env: Dict[str, str]) -> servers.Server:
    directory = servers.bench_dir()
    credentials_path = directory / f"{name}-credentials.yml"
    endpoints_path = directory / f"{name}-endpoints.yml"
    credentials_path.write_text(credentials, encoding="utf-8")
    endpoints_path.write_text(endpoints, encoding="utf-8")
    port = servers.free_port()
    rasa = Path(sys.executable).with_name("rasa")
    argv = [str(rasa), "run", "--model", str(model), "--port", str(port), "--interface", "127.0.0.1",
            "--credentials", str(credentials_path), "--endpoints", str(endpoints_path)]
    return servers.Server(name, argv, env, "/", port)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rasa-model", type=Path, default=None, help="trained Rasa model (default: newest in models/)")
    parser.add_argument("--nlg-model", default=None, help="response model for the Nebras NLG (default: shipped)")
    parser.add_argument("--conversations", type=int, default=30)
    args = parser.parse_args(argv)

    from nebras_bot.serving.agent import resolve_model

    rasa_model = resolve_model(args.rasa_model)
    source, description = common.shipped_model_source(args.nlg_model)
    nlg_model = servers.materialise_model(source)
    env = {"OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "NEBRAS_GEN_TORCH_THREADS": "1"}
    stock = nebras = None
    latencies: Dict[str, List[float]] = {"stock": [], "nebras": []}
    errors = {"stock": 0, "nebras": 0}
    empty = {"stock": 0, "nebras": 0}
    generated = 0
    try:
        stock = _rasa_server("overhead-stock", rasa_model, "rest:\n", "{}\n", env)
        nebras = _rasa_server(
            "overhead-nebras", rasa_model, "nebras_bot.serving.channel.NebrasChannel:\n",
            f"nlg:\n  type: nebras_bot.nlg.GPT2NaturalLanguageGenerator\n  model: {nlg_model}\n", env,
        )
        with httpx.Client(timeout=120) as client:

            def stock_turn(sender: str, text: str) -> bool:
                reply = client.post(stock.url + "/webhooks/rest/webhook", json={"sender": sender, "message": text})
                reply.raise_for_status()
                return any((m.get("text") or "").strip() for m in reply.json())

            def nebras_turn(sender: str, text: str) -> bool:
                nonlocal generated
                reply = client.post(nebras.url + "/webhooks/nebras/v1/chat", json={"sender_id": sender, "message": text})
                reply.raise_for_status()
                body = reply.json()
                generated += bool(body.get("generated"))
                return any((m.get("text") or "").strip() for m in body.get("messages", []))

            calls = {"stock": stock_turn, "nebras": nebras_turn}
            for label, call in calls.items():  # warm-up conversation on each server
                for text in TURNS:
                    call(f"warmup-{label}", text)
            for conversation in range(args.conversations):
                for turn, text in enumerate(TURNS):
                    order = ("stock", "nebras") if (conversation + turn) % 2 == 0 else ("nebras", "stock")
                    for label in order:
                        started = time.perf_counter()
                        try:
                            ok = calls[label](f"overhead-{conversation}", text)
                        except httpx.HTTPError:
                            errors[label] += 1
                            continue
                        latencies[label].append(time.perf_counter() - started)
                        empty[label] += not ok
    finally:
        for server in (stock, nebras):
            if server is not None:
                server.stop()

    stats = {label: common.summary(values) for label, values in latencies.items()}
    ratio = stats["stock"]["p50"] / stats["nebras"]["p50"]
    raw = {"latency_summary_s": stats, "latency_s": {k: common.list_of(v) for k, v in latencies.items()},
           "errors": errors, "empty_replies": empty, "nebras_generated_replies": generated,
           "mean_ratio": stats["stock"]["mean"] / stats["nebras"]["mean"],
           "p95_ratio": stats["stock"]["p95"] / stats["nebras"]["p95"]}
    path = common.write_result(
        NAME, ratio, TARGET, raw, rasa_model=str(rasa_model), nlg_model=description, turns=len(latencies["stock"]),
        ratio_definition="p50 latency stock rest + templated NLG / p50 latency NebrasChannel + Nebras NLG (templated turns)",
    )
    common.print_table(
        f"Templated turns, one at a time, alternating servers; Rasa model {rasa_model.name}",
        ["server", "turns", "p50 ms", "p95 ms", "mean ms", "errors", "empty"],
        [[label, s["n"], s["p50"] * 1000, s["p95"] * 1000, s["mean"] * 1000, errors[label], empty[label]]
         for label, s in stats.items()],
    )
    print(f"Nebras replies generated (should be 0 for templated turns): {generated}")
    print(common.verdict(NAME, ratio, TARGET))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
