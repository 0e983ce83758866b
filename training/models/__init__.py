"""Model zoo: every architecture module is imported here explicitly so the registry is complete and deterministic."""
from training.models import bl_mobilenet, bl_tam_head, blvnet, resnet, tam_head, tam_mobilenet, tsn  # noqa: F401  (register builders)
from training.models.registry import create, list_models, register_model

__all__ = ["create", "list_models", "register_model"]
