"""The plugin's models, one module per concern."""

from .ads import AdCampaign, AdClick, AdDailyStats
from .copurchase import CoPurchase
from .events import Event, EventKind
from .feedback import RecommendationFeedback
from .registry import ModelVersion, TrainingRun

__all__ = [
    "AdCampaign", "AdClick", "AdDailyStats", "CoPurchase", "Event", "EventKind", "ModelVersion",
    "RecommendationFeedback", "TrainingRun",
]
