"""Sub-commands of this stage for the ``nebras`` CLI (see nebras_bot/cli.py):

``nebras evaluate``, ``nebras evaluate-dialogues``, ``nebras report [--slides]``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

HEADLINE = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "length_ratio", "entity_recall")
# Per-reply fallback log lines of the generator would bury the progress bar; metrics.json counts them.
QUIET_LOGGERS = ("nebras_bot.generation.generator",)
TIMEOUT_REASON = "timeout"


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add this stage's commands to ``nebras``."""
    evaluate = subparsers.add_parser(
        "evaluate", help="score a response model on a Bitext-format CSV against two baselines",
        description="Produce the reply serving would send for every row's message, then write "
        "predictions.jsonl and metrics.json (BLEU, chrF, ROUGE, perplexity, bits/byte, distinct-n, "
        "entity recall, fallback rate, latency; intent-template and TF-IDF baselines).",
    )
    evaluate.add_argument("--model", required=True, help="model directory (e.g. models/nlg/current) or loader source")
    evaluate.add_argument("--data", required=True, type=Path, help="CSV to evaluate (Bitext columns)")
    evaluate.add_argument("--train", required=True, type=Path, help="training CSV (TF-IDF retrieval baseline)")
    evaluate.add_argument("--out", required=True, type=Path, help="output directory")
    evaluate.add_argument("--nlu", type=Path, help="Rasa model .tar.gz: take intent/entities from its parse")
    evaluate.add_argument("--limit", type=int, help="evaluate only the first N rows")
    evaluate.add_argument("--domain", type=Path, help="Rasa domain file or directory (default: domain.yml / domain/)")
    evaluate.add_argument("--timeout", type=float, help="per-reply time limit in seconds (default: serving's)")
    evaluate.add_argument("--prior-exchange", action="store_true",
                          help="every row follows an exchange on another subject (another row's message and reply)")
    evaluate.add_argument("--no-progress", action="store_true", help="hide progress bars")
    evaluate.set_defaults(func=handle_evaluate)

    dialogues = subparsers.add_parser(
        "evaluate-dialogues", help="play scripted conversations against a running assistant",
        description="Play the conversations of a YAML file against the assistant's REST channel and check "
        "every bot turn (must_match, must_not_match, non_empty, context retention, capture). "
        "Prints a JSON summary; exit code 1 when the pass rate is below --fail-under, 2 when unreachable.",
    )
    dialogues.add_argument("--conversations", required=True, type=Path, help="conversation YAML (docs/evaluation.md)")
    dialogues.add_argument("--url", required=True, help="assistant base URL, e.g. http://localhost:5005")
    dialogues.add_argument("--out", type=Path, default=Path("results/dialogues.json"), help="JSON result file")
    dialogues.add_argument("--timeout", type=float, default=None, help="seconds per turn (default 30)")
    dialogues.add_argument("--wait", type=float, default=0.0, help="wait up to this many seconds for the server")
    dialogues.add_argument("--fail-under", type=float, default=0.0, help="minimum overall check pass rate (0-1)")
    dialogues.set_defaults(func=handle_evaluate_dialogues)

    report = subparsers.add_parser(
        "report", help="HTML report of the latest evaluation and training runs",
        description="Write a self-contained HTML report (and with --slides an HTML slide deck) from the latest "
        "evaluation (results/**/metrics.json), training run (models/nlg/<version>/), data card, rasa test "
        "results (results/) and multi-turn evaluation (results/dialogues.json).",
    )
    report.add_argument("--out", type=Path, default=Path("results/report"), help="output directory")
    report.add_argument("--slides", action="store_true", help="also write slides.html, a short slide deck")
    report.add_argument("--evaluation", type=Path, help="evaluation directory (default: newest under results/)")
    report.add_argument("--model-dir", type=Path, help="training run directory (default: newest models/nlg/<version>)")
    report.add_argument("--data-card", type=Path, help="data_card.json (default: newest models/datasets/*/)")
    report.add_argument("--rasa-results", type=Path, help="rasa test output directory (default: results/)")
    report.add_argument("--dialogues", type=Path, help="evaluate-dialogues JSON (default: results/dialogues.json)")
    report.add_argument("--screenshot", type=Path, help="also save a PNG screenshot of the report (headless Chromium, < 200 KB)")
    report.set_defaults(func=handle_report)


def handle_evaluate(args: argparse.Namespace) -> int:
    from nebras_bot.evaluation.evaluate import EvaluationInputError, run_evaluation
    from nebras_bot.evaluation.serving_path import ModelUnavailableError

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        metrics = run_evaluation(model=args.model, data=args.data, train=args.train, out=args.out, nlu=args.nlu,
                                 limit=args.limit, domain=args.domain, show_progress=not args.no_progress,
                                 timeout_s=args.timeout, prior_exchange=args.prior_exchange)
    except (EvaluationInputError, ModelUnavailableError, FileNotFoundError, RuntimeError) as error:
        print(f"nebras evaluate: {error}", file=sys.stderr)
        return 2
    baselines = metrics["baselines"]
    print(f"{'metric':<14}{'model':>10}{'tfidf':>10}{'template':>10}")
    for key in HEADLINE:
        values = [metrics.get(key), baselines["tfidf_retrieval"].get(key), baselines["intent_template"].get(key)]
        print(f"{key:<14}" + "".join(f"{v:>10.2f}" if isinstance(v, (int, float)) else f"{'-':>10}" for v in values))
    for key in ("perplexity", "bits_per_byte", "fallback_rate", "latency_ms_p50", "latency_ms_p95"):
        value = metrics.get(key)
        print(f"{key:<14}{value:>10.3f}" if isinstance(value, (int, float)) else f"{key:<14}{'-':>10}")
    print(f"fallback reasons: {json.dumps(metrics.get('fallback_reasons') or {})}")
    timeouts = (metrics.get("fallback_reasons") or {}).get(TIMEOUT_REASON, 0)
    if timeouts:
        print(f"note: {timeouts} of {metrics['n']} replies hit the per-reply time limit and were scored as the "
              "templated fallback (as serving would send); to measure reply quality regardless of machine "
              "load, rerun with a larger --timeout (e.g. --timeout 60)", file=sys.stderr)
    print(f"wrote {args.out / 'predictions.jsonl'} and {args.out / 'metrics.json'} ({metrics['n']} rows)")
    return 0


def handle_evaluate_dialogues(args: argparse.Namespace) -> int:
    from nebras_bot.evaluation import dialogues as dl
    from nebras_bot.evaluation.settings import EvaluationSettings

    settings = EvaluationSettings()
    try:
        conversations = dl.load_conversations(args.conversations)
    except dl.ConversationFileError as error:
        print(f"nebras evaluate-dialogues: {error}", file=sys.stderr)
        return 2
    if args.wait and not dl.wait_for(args.url, args.wait):
        print(f"nebras evaluate-dialogues: no assistant answered at {args.url} within {args.wait:.0f} s", file=sys.stderr)
        return 2
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would bury the progress bar
    send, close = dl.rest_sender(args.url, args.timeout or settings.dialogue_timeout_s)
    from tqdm import tqdm

    try:
        with tqdm(total=len(conversations), desc="conversations", unit="conv", file=sys.stderr) as bar:
            result = dl.play(conversations, send, sender_prefix=settings.dialogue_sender_prefix, progress=bar.update)
    finally:
        close()
    result["url"], result["conversations_file"] = args.url, str(args.conversations)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    summary = {k: v for k, v in result.items() if k not in ("results", "failures")}
    summary["failures"] = len(result["failures"])
    print(json.dumps(summary, indent=2))
    print(f"full results: {args.out}", file=sys.stderr)
    if result["turns"] and result["errors"] == result["turns"]:
        print("nebras evaluate-dialogues: every turn failed to reach the assistant", file=sys.stderr)
        return 2
    return 0 if (result["pass_rate"] or 0.0) >= args.fail_under else 1


def handle_report(args: argparse.Namespace) -> int:
    from nebras_bot.evaluation.report import gather, write_report

    inputs = gather(args.evaluation, args.model_dir, args.data_card, args.rasa_results, args.dialogues)
    found = {
        "evaluation": inputs.evaluation is not None, "training run": inputs.training is not None,
        "data card": inputs.data_card is not None, "rasa test": inputs.rasa is not None,
        "multi-turn": inputs.dialogues is not None,
    }
    for name, present in found.items():
        print(f"  {name:<12} {'found' if present else 'missing (section says so)'}")
    written = write_report(args.out, inputs, slides=args.slides)
    for path in written:
        print(f"wrote {path}")
    if args.screenshot:
        from nebras_bot.evaluation.screenshot import BrowserUnavailableError, screenshot

        try:
            png = screenshot(written[0], args.screenshot)
        except BrowserUnavailableError as error:
            print(f"nebras report: no screenshot: {error}", file=sys.stderr)
            return 2
        print(f"wrote {png} ({png.stat().st_size // 1024} KB)")
    return 0
