"""Community engagement scoring: webhook ingest, identity, decayed scores, tiers and CRM sync."""
