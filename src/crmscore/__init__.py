"""crmscore: customer predictions for CRM teams (churn, next purchase, lookalike), each explained."""

__version__ = "0.1.0"
