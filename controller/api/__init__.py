"""REST API (prefix /api/v1), one router per resource."""
