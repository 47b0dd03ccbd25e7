"""End to end with the shipped endpoints.yml: a piped `rasa shell` session (the mini fixture bot)
stores its conversation in the SQL tracker store under var/, and `nebras learn` harvests it into
the stories export and the NLU review file. Slow: trains the mini bot and starts `rasa shell`."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def mini_bot_model(tmp_path_factory):
    from helpers.mini_bot import train_mini_bot

    return train_mini_bot(tmp_path_factory.mktemp("mini_bot"))


def test_rasa_shell_conversation_is_harvested_by_nebras_learn(home, repo_root, rasa_cmd, rasa_env, mini_bot_model):
    from nebras_bot.learning import proof
    from nebras_bot.learning.pipeline import learn
    from nebras_bot.training import registry

    shutil.copyfile(repo_root / "endpoints.yml", home / "endpoints.yml")
    (home / "var").mkdir(exist_ok=True)
    result = subprocess.run(rasa_cmd + ["shell", "--model", str(mini_bot_model), "--endpoints", "endpoints.yml"],
                            input="hello\nwhere is my order\nblorp xyzzy\n/stop\n", cwd=home,
                            env=dict(rasa_env, NEBRAS_HOME=str(home)), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (home / "var" / "tracker.db").is_file()

    proof.write_fixture(home)  # a base dataset and a current model to learn on top of
    version = home / "models" / "nlg" / "v0"
    version.mkdir(parents=True)
    (version / "config.json").write_text("{}")
    (version / "nebras.json").write_text(json.dumps({"version": "v0", "dataset_version": "proof-base"}))
    registry.promote("v0")

    def refuse_everything(*, model, data, train, out, settings):
        return {"bits_per_byte": 1.0}

    def trainer(*, data, base, out, settings):
        (out / "c").mkdir(parents=True)
        (out / "c" / "config.json").write_text("{}")
        return out / "c"

    record = learn(proof.learning_settings(), trainer=trainer, evaluator=refuse_everything)
    assert record.inputs["harvest"]["tracker_events"] > 0, record.inputs["harvest"]
    stories = yaml.safe_load(open(record.exports["stories"]))["stories"]
    steps = [step for story in stories for step in story["steps"]]
    assert {"intent": "greet", "user": "hello"} in steps
    review = open(record.exports["nlu_review"]).read()
    assert "blorp xyzzy" in review
    assert registry.current_version() == "v0" and record.decision == "refused"
