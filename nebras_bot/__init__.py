"""Nebras: a Rasa 3 customer-support assistant with GPT-2-family generated replies.

One sub-package per stage of the flow:

- ``data``        sources (Bitext, Rasa stories, tickets) -> cleaned, scrubbed, split datasets
- ``training``    fine-tuning recipes, the training loop, the model registry
- ``generation``  model loading, prompts, decoding, the output guard (used by the NLG plug-in)
- ``evaluation``  BLEU / ROUGE / perplexity, baselines, dialogue tests, the HTML report
- ``learning``    the continuous-learning loop (harvest -> curate -> train -> evaluate -> promote)
- ``serving``     the FastAPI server, the Rasa custom channel, the NLG server, channels
- ``monitoring``  Prometheus metrics, structured logging, error tracking

Rasa plug-ins live where Rasa's configuration points: ``nebras_bot.nlg`` (the NLG class for
``endpoints.yml``), ``components/`` (graph components for ``config.yml``), ``actions/``.
"""

__version__ = "0.1.0"
