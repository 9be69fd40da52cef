"""Errors that users can act on. Each message says what to fix; the CLI prints it without a traceback."""


class CrmscoreError(Exception):
    """Base class for errors caused by input or configuration rather than by a bug."""

    exit_code = 2


class ConfigError(CrmscoreError):
    """The YAML config or a setting is wrong (unknown key, missing file, bad value)."""


class DataContractError(CrmscoreError):
    """Source data breaks the data contract (missing column, too many bad rows)."""


class FeatureContractError(CrmscoreError):
    """Published features and a model's cannot be checked against each other (e.g. publish cannot read the
    served models' feature sets)."""
