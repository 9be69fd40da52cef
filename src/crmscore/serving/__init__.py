"""The scoring service's parts: API keys, the online feature store, the prediction log and the loaded models.
The BentoML service class itself is crmscore.serving.service.ScoringService."""
