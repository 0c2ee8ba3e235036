"""Discovery: the public search index over raids and the OAI-PMH 2.0 data provider."""
