"""Request and response models of the scoring API (pydantic; their descriptions and examples feed the
OpenAPI docs at /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CustomerIn(BaseModel):
    # `example`, not JSON Schema's `examples`: BentoML builds its OpenAPI Schema objects from each model's
    # top-level JSON schema keys, and its Schema has no `examples` (GET /docs.json was a 500). The rest of the
    # schema is made OpenAPI 3.0 where the document is served (crmscore.serving.openapi).
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"customer_id": "C0042"}})

    customer_id: str = Field(description="The customer's id, as in your transactions (at most 128 characters).",
                             max_length=128, examples=["C0042"])
    features: dict[str, Any] | None = Field(
        default=None, description="Score these features instead of the published snapshot: every feature the "
                                  "model expects (GET /v1/models), numbers or text.")


class Reason(BaseModel):
    feature: str = Field(description="Feature name.")
    value: Any = Field(description="The customer's value of the feature.")
    contribution: float = Field(description="SHAP contribution in the score's space: calibrated log-odds "
                                            "(probability models), log of the amount (expected spend).")
    probability_change: float | None = Field(default=None, description="The reason's effect on the probability: "
                                             "its step from the base value's score to the score, reasons added "
                                             "largest first (probability models).")
    change: float | None = Field(default=None, description="The reason's effect on the score in its unit, "
                                 "reasons added largest first (regression models, e.g. currency).")
    text: str = Field(description="The reason in plain language.")


class CustomerScore(BaseModel):
    customer_id: str
    model: str = Field(description="Registered model name.")
    version: str | None = Field(default=None, description="Registered model version.")
    alias: str | None = Field(default=None, description="Alias the version was loaded by.")
    score: float | None = Field(default=None, description="Probability (0-1).")
    decile: int | None = Field(default=None, description="1 = the highest-scoring tenth of the test population.")
    band: str | None = Field(default=None, description="Lookalike band (high/medium/low/none).")
    segment: str | None = Field(default=None, description="RFM segment.")
    lifecycle_stage: str | None = None
    base_value: float | None = Field(default=None, description="SHAP base value in the score's space: "
                                     "base_value + sum(contributions) = logit(score) (probability models) or "
                                     "log(score) (expected spend).")
    reasons: list[Reason] | None = None
    details: dict[str, Any] | None = Field(
        default=None, description="Model-specific outputs: days_to_next (median, low, high) for next-purchase, "
                                  "top_category and next_categories for next-category, percentile for lookalike.")
    in_population: bool | None = Field(
        default=None, description="Whether the customer is in the population the model was trained for (churn: a "
                                  "purchase within the lifecycle's churned_days; next-category: a purchase; "
                                  "lookalike: a purchase within its lookback). false: the score is still given, "
                                  "but the model was not trained on such customers and batch files leave them "
                                  "out. null: the model has no rule, or the features sent have no recency_days.")
    population: str | None = Field(default=None, description="The model's population in words, when the "
                                                             "customer is outside it.")
    error: str | None = Field(default=None, description="Why this customer could not be scored.")


class ScoreResponse(BaseModel):
    request_id: str
    model: str
    results: list[CustomerScore]
