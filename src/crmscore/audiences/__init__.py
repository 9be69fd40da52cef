"""Audiences: seeds (a file of ids, a query over the feature table, a campaign's responders) and their
evaluation. The lookalike model itself lives in crmscore.models.lookalike."""
