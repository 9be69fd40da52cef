"""The BentoML service of this repository: `bentoml serve serving.service:ScoringService` (or
`crmscore serve`). The class lives in the package (crmscore.serving.service) so an installed crmscore
serves the same thing."""

from crmscore.serving.service import ScoringService

__all__ = ["ScoringService"]
