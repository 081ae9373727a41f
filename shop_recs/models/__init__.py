"""The plugin's models, one module per concern."""

from .events import Event, EventKind
from .feedback import RecommendationFeedback
from .registry import ModelVersion, TrainingRun

__all__ = ["Event", "EventKind", "ModelVersion", "RecommendationFeedback", "TrainingRun"]
