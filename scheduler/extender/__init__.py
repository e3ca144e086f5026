"""The extender service: verbs bytes-in/bytes-out, decision records, HTTP routes."""
