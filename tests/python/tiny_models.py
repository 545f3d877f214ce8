"""Tiny random-weight models for tests, generated once per test session with
tests/models/make_tiny_model.py (real formats: config.json, safetensors, tokenizer.json)."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "models"))
import make_tiny_model  # noqa: E402

_made = {}


def tiny_model_dir(tmp_path_factory, **options):
    """A model directory for these make_model() options (defaults: a 2-layer llama, f32),
    created on first request in this session."""
    key = json.dumps(options, sort_keys=True)
    if key not in _made:
        out = tmp_path_factory.mktemp("model")
        make_tiny_model.make_model(str(out), **options)
        _made[key] = str(out)
    return _made[key]
