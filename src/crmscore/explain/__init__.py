"""Explanations: SHAP contributions turned into plain-language reasons."""

from crmscore.explain.reasons import format_value, reason_text

__all__ = ["format_value", "reason_text"]
