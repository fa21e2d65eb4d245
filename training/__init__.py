"""dfx.training: models, data, the training loop and checkpoints (needs the ``train`` extra)."""

from .registry import create_model, get_entry, list_models, register_model, resolve_name

__all__ = ["create_model", "get_entry", "list_models", "register_model", "resolve_name"]
