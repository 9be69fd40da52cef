"""The scoring service as a deployable: the BentoML class (crmscore.serving.service.ScoringService), its
request guard, API keys, HTTP metrics, OpenAPI document, request batching and a local launcher. What it
computes is the scoring layer's (crmscore.scoring.online.ScoringEngine)."""
