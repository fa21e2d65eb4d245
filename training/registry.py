"""The model registry: one name → builder + default preprocessing spec (docs/ARCHITECTURE.md, "Models")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dfx.engine.errors import DfxError
from dfx.engine.spec import PreprocessSpec

__all__ = ["ModelEntry", "register_model", "get_entry", "create_model", "list_models", "resolve_name"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered detector.

    Attributes:
        name: canonical name.
        builder: ``builder(spec, **kwargs) -> (nn.Module, model_kwargs)``; ``model_kwargs`` rebuild the same
            architecture later and are stored in every artifact.
        default_spec: preprocessing the model is trained with unless told otherwise.
        aliases: other accepted names.
        family: ``mesonet`` (written here, Keras weights importable) or ``timm`` (ImageNet weights loadable).
        description: one line for ``--help`` and listings.
    """

    name: str
    builder: Callable[..., Any]
    default_spec: PreprocessSpec
    aliases: tuple[str, ...] = ()
    family: str = "timm"
    description: str = ""
    train_defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Adds a model; a name or alias already taken raises ``ValueError``."""
    for key in (entry.name, *entry.aliases):
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"model name {key!r} is already registered")
    _REGISTRY[entry.name] = entry
    _ALIASES.update({a: entry.name for a in entry.aliases})
    return entry


def _ensure_loaded() -> None:
    # The built-in models register on import; importing here keeps `registry` free of torch at import time.
    from . import mesonet, timm_models  # noqa: F401


def resolve_name(name: str) -> str:
    """Canonical name for a name or alias (case-insensitive); unknown names list the valid ones."""
    _ensure_loaded()
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        valid = ", ".join(f"{n} ({', '.join(e.aliases)})" if e.aliases else n for n, e in sorted(_REGISTRY.items()))
        raise DfxError(f"unknown model {name!r}; valid models: {valid}")
    return key


def get_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` for ``name`` (or an alias)."""
    return _REGISTRY[resolve_name(name)]


def list_models() -> list[str]:
    """Canonical names of all registered models, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def create_model(name: str, spec: PreprocessSpec | None = None, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Builds a registered model with a one-logit output.

    Args:
        name: model name or alias.
        spec: preprocessing spec (its input size shapes size-dependent layers); the model's default if None.
        **kwargs: builder options (``pretrained``, ``pretrained_file``, ``drop_rate``…).

    Returns:
        (module, model_kwargs): ``model_kwargs`` rebuild this architecture via ``create_model(name, **model_kwargs)``.
    """
    entry = get_entry(name)
    return entry.builder(spec or entry.default_spec, **kwargs)
