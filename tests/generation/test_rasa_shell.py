"""`rasa shell` (a real subprocess) answers with the generator configured in endpoints.yml."""
from __future__ import annotations

import subprocess

import pytest

from helpers.mini_bot import REPLIES


@pytest.mark.slow
def test_piped_rasa_shell_uses_the_generator(mini_bot_model, tiny_nlg_dir, rasa_cmd, rasa_env, tmp_path):
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(
        "nlg:\n"
        "  type: nebras_bot.nlg.GPT2NaturalLanguageGenerator\n"
        f"  model: {tiny_nlg_dir}\n"
        "  timeout: 30\n"
        "  torch_threads: 1\n"
    )
    result = subprocess.run(
        rasa_cmd + ["shell", "--model", str(mini_bot_model), "--endpoints", str(endpoints)],
        input="hello\nmy order is 48213\nwhere is my order\ntell me a joke\n/stop\n",
        cwd=tmp_path, env=rasa_env, capture_output=True, text=True, timeout=600,
    )
    output = result.stdout
    assert result.returncode == 0, (output + result.stderr)[-4000:]
    assert REPLIES["greet"] in output  # rephrased (the template says "Hello! How can I help you?")
    assert "Thanks, I noted order 48213." in output  # templated turn
    assert "Your order 48213 is on its way." in output  # generated, the id from the earlier turn
    assert REPLIES["out_of_scope"] in output  # the generative policy's turn
