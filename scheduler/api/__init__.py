"""lowcarb's HTTP contract: the one error model and the typed (pydantic) models of the JSON
endpoints, shared by the routes that serve them and by the OpenAPI document. Never on the extender
verbs' hot path: those stay bytes in, bytes out over msgspec."""
